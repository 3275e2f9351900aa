"""Incident service: adapters layer."""
