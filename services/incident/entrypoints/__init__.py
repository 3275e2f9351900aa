"""Incident service: entrypoints layer."""
