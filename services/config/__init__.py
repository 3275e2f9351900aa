"""Configuration management, service catalogue and SLA policies (ISO/IEC 20000-1 8.2.6, 8.3.3)."""
