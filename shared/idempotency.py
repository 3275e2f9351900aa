"""Idempotency-Key without HTTP: the header's name, its syntax, how long a key is kept, and the
typed errors of a key that cannot be honoured.

Two users share it: the HTTP middleware (`shared/http/idempotency.py`), which runs a keyed POST
in one request transaction, and a use case that cannot run in one transaction and honours the
key itself (the config service's streamed import, `services/config/application/imports.py`).
Both accept the same keys, keep them as long, and refuse the same way.
"""

from __future__ import annotations

import re
from datetime import timedelta

from shared.errors import Conflict, FieldError, ValidationFailed

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a claimed key is kept (and refused for another request) before it is free again.
DEFAULT_RETENTION = timedelta(hours=24)
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
KEY_SYNTAX = "1 to 255 printable ASCII"


class InvalidKey(ValidationFailed):
    """A key that is not 1 to 255 printable ASCII characters (answered 422 naming the header)."""

    def __init__(self) -> None:
        super().__init__([FieldError(HEADER, KEY_SYNTAX, "header")])


class KeyReused(ValidationFailed):
    """The caller's key was already used for a different request (answered 422)."""

    def __init__(self) -> None:
        super().__init__(
            [FieldError(HEADER, "reused", "header")],
            f"this {HEADER} was already used for a different request",
        )


class KeyInProgress(Conflict):
    """The request the key was first used for is still running (answered 409)."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(
            f"{what} with this {HEADER} is in progress; retry once it has finished",
            fields=[FieldError(HEADER, "in progress", "header")],
        )
        # The name of its problem type on the wire (`urn:itsm:problem:<problem>`).
        self.problem = problem


def valid_key(key: str) -> bool:
    """Whether a client's key has the accepted syntax."""
    return KEY_PATTERN.fullmatch(key) is not None


def check_key(key: str) -> None:
    """Raise InvalidKey unless the key has the accepted syntax."""
    if not valid_key(key):
        raise InvalidKey
