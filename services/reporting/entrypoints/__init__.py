"""Reporting service: entrypoints layer."""
