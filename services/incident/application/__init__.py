"""Incident service: application layer."""
