"""Training, evaluation, served evaluation and reindexing for the two-tower model."""
