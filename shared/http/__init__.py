"""HTTP conventions every service follows: problem+json, pagination, idempotency, health."""
