"""Reporting service: application layer."""
