"""CI classes, one module per job; `services/config/domain/classes.py` is their index."""
