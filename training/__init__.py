"""The learning engine: datasets, trainer, evaluation (no database, no HTTP)."""
