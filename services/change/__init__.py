"""Change management, release and deployment (ISO/IEC 20000-1 8.5)."""
