"""Shared pytest setup: one CPU thread so numbers are reproducible on every machine."""
import torch

torch.set_num_threads(1)
