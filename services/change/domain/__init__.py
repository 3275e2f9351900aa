"""Change service: domain layer (pure: no I/O)."""
