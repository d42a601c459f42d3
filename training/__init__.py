"""Training, evaluation, served evaluation and rollouts of the two-tower model."""
