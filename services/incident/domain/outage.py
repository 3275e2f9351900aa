"""Outage records (pure): a business service unavailable (`outage`) or impaired
(`degradation`) from a start to an end, recorded directly or marked on a major incident; the
downtime the availability reports of ISO/IEC 20000-1 8.7.1 are computed from.

An outage is versioned: recorded is version 1 (`OutageRecordedV1`), each change a new version
(`OutageUpdatedV1` with the outage as it now stands): its end set, a time corrected, or the
record withdrawn with a reason (recorded in error: it no longer counts, and takes no more
changes). Times may not lie in the future beyond a small tolerance (clocks differ), and the end
is never before the start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from shared.errors import Conflict, FieldError, ValidationFailed
from shared.events.catalogue import OutageKind, OutageRecordedV1, OutageUpdatedV1, OutageV1

# How far ahead of the service's clock a start or end may lie (the caller's clock may differ).
FUTURE_TOLERANCE: Final = timedelta(minutes=5)
MAX_SUMMARY: Final = 2000


@dataclass(frozen=True, kw_only=True)
class Outage:
    """An outage as stored."""

    id: uuid.UUID
    tenant_id: str
    services: tuple[str, ...]
    kind: OutageKind
    start: datetime
    end: datetime | None = None
    incident_id: uuid.UUID | None = None
    summary: str = ""
    withdrawn: bool = False
    withdrawn_reason: str = ""
    version: int = 1
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    @property
    def subject(self) -> str:
        """The events' subject: `outage/<id>`."""
        return f"outage/{self.id}"

    @property
    def open(self) -> bool:
        """Still lasting (no end) and counting (not withdrawn)."""
        return self.end is None and not self.withdrawn

    def state(self) -> OutageV1:
        """The outage as events carry it."""
        return OutageV1(
            services=list(self.services),
            kind=self.kind,
            start=self.start,
            end=self.end,
            incident_id=str(self.incident_id) if self.incident_id else None,
            summary=self.summary,
        )


def _times(start: datetime, end: datetime | None, now: datetime) -> list[FieldError]:
    problems = []
    latest = now + FUTURE_TOLERANCE
    if start > latest:
        problems.append(FieldError("start", "may not lie in the future"))
    if end is not None:
        if end < start:
            problems.append(FieldError("end", "must not be before start"))
        elif end > latest:
            problems.append(FieldError("end", "may not lie in the future: set it once it is over"))
    return problems


def record(
    *,
    tenant_id: str,
    services: tuple[str, ...],
    kind: OutageKind,
    start: datetime,
    end: datetime | None,
    incident_id: uuid.UUID | None,
    summary: str,
    actor: str,
    now: datetime,
    id: uuid.UUID | None = None,
) -> tuple[Outage, OutageRecordedV1]:
    """A new outage (version 1) and its event; `ValidationFailed` naming each bad field."""
    problems = _times(start, end, now)
    if not services:
        problems.append(FieldError("services", "name at least one business service"))
    if problems:
        raise ValidationFailed(problems)
    outage = Outage(
        id=id or uuid.uuid4(),
        tenant_id=tenant_id,
        services=tuple(dict.fromkeys(services)),
        kind=kind,
        start=start,
        end=end,
        incident_id=incident_id,
        summary=summary.strip(),
        created_at=now,
        created_by=actor,
        updated_at=now,
        updated_by=actor,
    )
    return outage, OutageRecordedV1(outage=outage.state())


def update(
    outage: Outage, wanted: dict[str, Any], *, actor: str, now: datetime
) -> tuple[Outage, OutageUpdatedV1] | None:
    """The next version with `wanted` (`start`, `end`, `kind`, `summary`, `withdrawn` with a
    `reason`) applied and its event; None when nothing changes. A withdrawn outage takes no
    more changes (409); a withdrawal needs a reason (422)."""
    if outage.withdrawn:
        raise Conflict("the outage was withdrawn: it takes no more changes")
    values: dict[str, Any] = {}
    for name in ("start", "end", "kind", "summary"):
        if name in wanted and wanted[name] != getattr(outage, name):
            values[name] = wanted[name].strip() if name == "summary" else wanted[name]
    if wanted.get("withdrawn"):
        reason = (wanted.get("reason") or "").strip()
        if not reason:
            raise ValidationFailed([FieldError("reason", "say why the outage is withdrawn")])
        values |= {"withdrawn": True, "withdrawn_reason": reason}
    elif wanted.get("withdrawn") is False and "reason" in wanted and wanted["reason"]:
        raise ValidationFailed([FieldError("reason", "only a withdrawal takes a reason")])
    if not values:
        return None
    after = replace(outage, **values)
    problems = _times(after.start, after.end, now)
    if problems:
        raise ValidationFailed(problems)
    after = replace(after, version=outage.version + 1, updated_at=now, updated_by=actor)
    event = OutageUpdatedV1(
        outage=after.state(), withdrawn=after.withdrawn, reason=after.withdrawn_reason
    )
    return after, event


def ended_by_resolution(
    outage: Outage, resolved_at: datetime, *, actor: str
) -> tuple[Outage, OutageUpdatedV1]:
    """An open outage of a major incident ended when the incident is resolved (never before its
    own start)."""
    end = max(resolved_at, outage.start)
    after = replace(
        outage, end=end, version=outage.version + 1, updated_at=resolved_at, updated_by=actor
    )
    return after, OutageUpdatedV1(outage=after.state())
