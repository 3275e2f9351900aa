"""Service reporting, monitoring and audit evidence (ISO/IEC 20000-1 9.1, 9.4)."""
