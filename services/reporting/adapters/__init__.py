"""Reporting service: adapters layer."""
