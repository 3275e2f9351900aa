"""Instants every service accepts, so the rule about them lives in one place.

Outside shared/http so that a domain can apply the rule without depending on the HTTP layer
(the import-linter contracts in pyproject.toml); shared/http/types.py re-exports it for the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

# What PostgreSQL `timestamptz`, asyncpg and Python all carry round trip, with room to spare:
# Python stops at year 9999 (an instant near it with a negative offset cannot even be turned
# into UTC), and asyncpg turns 0001-01-01T00:00:00Z into `-infinity`, which reads back as a
# naive datetime. Nothing the platform records happened before 1900.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
RANGE = "1900-01-01T00:00:00Z to 9999-12-30T23:59:59Z"


def in_range(value: datetime) -> datetime:
    """The instant, if it falls within RANGE; ValueError (a 422 in a model) otherwise."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must fall between {RANGE}") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"must fall between {RANGE}")
    return value


# Every timestamp the API accepts (bodies and query parameters): RFC 3339 with a time zone (a
# naive one is refused), within RANGE; a refusal is a 422 naming the field.
Timestamp = Annotated[AwareDatetime, AfterValidator(in_range)]
