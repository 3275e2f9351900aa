"""Change service: application layer (use cases over the unit of work)."""
