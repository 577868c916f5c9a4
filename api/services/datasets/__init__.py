"""Training datasets: rows and their review, generation from documents, import / export, quality
checks and immutable snapshots (the learning engine itself is `training/`)."""
