"""Incident service: domain layer."""
