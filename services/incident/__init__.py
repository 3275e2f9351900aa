"""Incident, service request and problem management (ISO/IEC 20000-1 8.6)."""
