"""Durable background jobs: a table, a claim with a lease, and a worker loop."""
