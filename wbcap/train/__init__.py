"""Training: datasets, losses, stages, trainer, merge."""
