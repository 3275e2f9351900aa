"""How a field's value is written into a record's history `changes` (and the updated events)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


def change_value(value: Any) -> Any:
    """A field value as JSON: instants in RFC 3339 (`2026-05-01T10:00:00Z`), ids as text."""
    if isinstance(value, datetime):
        # str() gives "2026-05-01 10:00:00+00:00": not RFC 3339, unlike every other instant.
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple | list):
        return [change_value(v) for v in value]
    return value
