"""Cursor pagination: opaque cursors over a stable sort key, capped page sizes."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.http.problems import HttpProblem, invalid

T = TypeVar("T")

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


class Page(BaseModel, Generic[T]):
    """One page of results; pass `next_cursor` back as `cursor` for the next one."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: list[Any]) -> str:
    """An opaque cursor for the last item's sort key."""
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The sort key inside a cursor; a cursor that is not ours is a 422 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise invalid_cursor()
    return key


def cursor_int(cursor: str | None) -> int:
    """The integer position in a one-key cursor (0 without a cursor); 422 for a foreign one."""
    if not cursor:
        return 0
    value = decode_cursor(cursor, 1)[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_cursor()
    return value


def cursor_instant(value: Any) -> datetime:
    """An instant inside a cursor, in UTC; 422 naming `cursor` for one that is not ours."""
    try:
        instant = datetime.fromisoformat(str(value))
        # Stored ±infinity reads back naive (asyncpg); every other instant we write is aware.
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise invalid_cursor() from None


def invalid_cursor() -> HttpProblem:
    """The 422 for a cursor this API did not make (or whose key no longer parses)."""
    return invalid([{"in": "query", "field": "cursor", "detail": "not a cursor from this API"}])


PageSize = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}.")
]
Cursor = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` of the previous page.")
]


def page_of(rows: list[T], limit: int, key: Any) -> Page[T]:
    """Build a page from up to limit+1 fetched rows; `key` gives an item's sort key."""
    has_more = len(rows) > limit
    items = rows[:limit]
    return Page[T](items=items, next_cursor=encode_cursor(key(items[-1])) if has_more else None)
