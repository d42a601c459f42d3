"""Training, evaluation and served evaluation of the two-tower model (rollouts: `ops`)."""
