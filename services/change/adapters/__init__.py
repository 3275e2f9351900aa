"""Change service: adapters layer (PostgreSQL)."""
