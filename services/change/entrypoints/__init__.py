"""Change service: entrypoints layer (HTTP routers, event consumers)."""
