"""The errors a use case raises when its rules refuse a request: typed, and free of HTTP.

`application/` and `domain/` raise these; the one mapping at the edge
(`shared/http/problems.py`) turns each into an RFC 9457 problem+json with its status, and a
consumer turns them into a dead-letter reason. Each error names the fields the caller should
fix (`FieldError`), so the answer can point at them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Location = Literal["body", "path", "query", "header"]


@dataclass(frozen=True)
class FieldError:
    """One field the caller should fix, where it was sent, and why."""

    field: str
    detail: str
    location: Location = "body"
    # Where in the body, as a JSON pointer, when the dotted field name is ambiguous (a name
    # with a dot or a slash in it): `#/attributes/a.b~1c`.
    pointer: str | None = None


class DomainError(Exception):
    """A request the rules refuse (the base of every typed error here)."""

    def __init__(
        self,
        detail: str,
        *,
        fields: Sequence[FieldError] = (),
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: tuple[FieldError, ...] = tuple(fields)
        self.extensions: dict[str, Any] = dict(extensions or {})


class NotFound(DomainError):
    """The object does not exist (or belongs to another tenant, which is the same to a caller)."""

    def __init__(self, what: str, ident: str, *, fields: Sequence[FieldError] = ()) -> None:
        super().__init__(f"{what} {ident} does not exist", fields=fields)
        self.what = what
        self.ident = ident


class Conflict(DomainError):
    """The request contradicts the object's current state (answered 409)."""


class InvalidTransition(Conflict):
    """A move the record's workflow does not have from its current state; names the allowed."""

    def __init__(
        self,
        record: str,
        current: str,
        wanted: str,
        allowed: Sequence[str],
        *,
        field: str = "to",
    ) -> None:
        allowed = tuple(allowed)
        where = (
            f"allowed from {current}: {', '.join(allowed)}" if allowed else f"{current} is final"
        )
        super().__init__(
            f"{record}: cannot go from {current} to {wanted} ({where})",
            fields=[FieldError(field, "allowed: " + (", ".join(allowed) or "none (final state)"))],
            extensions={"allowed": list(allowed)},
        )
        self.record = record
        self.current = current
        self.wanted = wanted
        self.allowed = allowed


class Gone(DomainError):
    """The object existed but no longer takes this request, for good (answered 410): an
    expired survey link."""


class PreconditionFailed(DomainError):
    """The caller's precondition does not hold (answered 412)."""


class StaleVersion(PreconditionFailed):
    """A write that read an older version of the record; carries the current version."""

    def __init__(self, what: str, current: int, expected: int) -> None:
        super().__init__(f"{what} is at version {current}, not {expected}: read it again and retry")
        self.what = what
        self.current = current
        self.expected = expected


class ValidationFailed(DomainError):
    """Input the rules refuse, naming each field (answered 422)."""

    def __init__(self, fields: Sequence[FieldError], detail: str | None = None) -> None:
        fields = tuple(fields)
        names = ", ".join(dict.fromkeys(f.field for f in fields))
        super().__init__(detail or f"invalid: {names}", fields=fields)


class Forbidden(DomainError):
    """The caller may not do this to this object, whatever its roles (answered 403)."""


def invalid_field(field: str, detail: str, location: Location = "body") -> ValidationFailed:
    """The 422 for one field."""
    return ValidationFailed([FieldError(field, detail, location)])
