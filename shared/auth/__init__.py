"""Authentication (signed JWTs), roles and the permission matrix every endpoint declares."""
