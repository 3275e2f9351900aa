"""Reporting service: application layer (the verifiable log's checkpoints and proofs)."""
