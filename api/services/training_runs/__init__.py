"""Training runs: a dataset snapshot trained into a versioned adapter (`training.trainer` does the
training)."""
