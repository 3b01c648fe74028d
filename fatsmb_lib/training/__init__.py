"""Training: the loop, evaluation, the run a model trains in, the registrations and the settings."""
