"""Data: files and generators to dense time-ordered sequences, the split, and their batches."""
