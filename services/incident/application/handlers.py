"""Incident use cases: each runs in one unit of work with its events and SLA clocks.

Affected services and the SLA policy come from this service's projection of the config
service's events (`uow.projection`), never from a call. The clocks start, and a trend of
incidents suggests a problem, as reactions to the created event (`application/reactions.py`);
moves pause, resume, stop and reopen the clocks; a priority or CI change retargets them keeping
the time already counted (`application/sla.py`).

Each use case the HTTP API calls takes the pool and builds its own unit of work; the work itself
is a function of a unit of work (`log_incident`, `move_incident`, ...), which alert intake,
auto-close and change correlation reuse and unit tests drive with a fake.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.incident.adapters import numbers
from services.incident.adapters.projections import PolicySnapshot
from services.incident.application import sla
from services.incident.application.reactions import joining, unit_of_work
from services.incident.application.uow import (
    IncidentWork,
    store_change,
    store_new_incident,
)
from services.incident.domain import incident as domain
from services.incident.domain.incident import Change, Incident, log_incident
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.errors import Conflict, FieldError, NotFound, StaleVersion, invalid_field
from shared.events.catalogue import MajorReviewRecordedV1, WorkNoteAddedV1


@dataclass(frozen=True)
class LogIncident:
    """Command: log a new incident."""

    title: str
    description: str
    impact: int
    urgency: int
    caller: str | None = None
    category: str | None = None
    ci_id: uuid.UUID | None = None
    services: tuple[str, ...] = ()
    assignment_group: str | None = None
    assignee: str | None = None
    major_flagged: bool = False
    major_owner: str | None = None
    parent_id: uuid.UUID | None = None
    origin: str = "manual"


def incident_view(incident: Incident) -> dict[str, Any]:
    """The incident as the API shows it (JSON-ready)."""
    view = dict(vars(incident))  # not asdict: it deep-copies every value
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
    view["services"] = list(incident.services)
    view["reference"] = f"INC{incident.number}" if incident.number else None
    return view


async def affected(
    uow: IncidentWork, ci_id: uuid.UUID | str | None, named: tuple[str, ...]
) -> tuple[tuple[str, ...], PolicySnapshot | None]:
    """Affected business services (named ones plus those the CI supports) and their policy."""
    services = set(named)
    if ci_id is not None:
        services.update(await uow.projection.services_of_ci(str(ci_id)))
    ordered = tuple(sorted(services))
    return ordered, await uow.projection.policy_for(ordered)


async def log_incident_in(
    uow: IncidentWork,
    command: LogIncident,
    *,
    now: datetime | None = None,
    number: int | None = None,
) -> Incident:
    """Log a new incident on the unit of work: the row, its history and its events, with the
    workaround of a known error on its CI or services and a change implemented on its CI
    shortly before. Its reactions (clocks, trend) run before it returns, so the incident
    returned is as stored (a trend that opened a problem has linked it: version 2).

    `number` is the incident's number taken beforehand (`adapters/numbers.allocate`, which
    keeps concurrent creations from queueing on the tenant's counter); without one, the number
    is taken in this unit of work."""
    now = now or datetime.now(UTC)
    settings = await uow.settings.get()
    if command.ci_id is not None and await uow.projection.ci_by_id(str(command.ci_id)) is None:
        raise invalid_field("ci_id", f"no configuration item {command.ci_id} is known")
    if command.parent_id is not None and await uow.incidents.get(command.parent_id) is None:
        raise invalid_field("parent_id", f"no incident {command.parent_id}")
    services, policy = await affected(uow, command.ci_id, command.services)
    suspect = None
    if command.ci_id is not None:
        await uow.changes.lock_ci(command.ci_id, shared=True)
        suspect = await uow.changes.recent_change(
            command.ci_id, now, settings.change_window_seconds
        )
    # The created event carries the workaround, so the known error is read before, not reacted
    # to after.
    known = await uow.problems.newest_known_error(command.ci_id, services)
    fields = dict(vars(command))
    for name in ("title", "description", "impact", "urgency", "services"):
        fields.pop(name)
    incident, events = log_incident(
        tenant_id=uow.tenant_id,
        title=command.title,
        description=command.description,
        impact=command.impact,
        urgency=command.urgency,
        actor=uow.context.actor,
        now=now,
        matrix=settings.matrix,
        number=number or await uow.numbers.next("incident"),
        services=services,
        sla_policy=policy.name if policy else None,
        suspected_change=suspect.change_id if suspect else None,
        workaround=known[1] if known else None,
        known_error_id=known[0] if known else None,
        **fields,
    )
    if suspect is not None:
        events.append(suspect.suspicion(settings.change_window_seconds))
    await store_new_incident(uow, incident, events)
    await uow.react()
    stored = uow.latest_incident(incident.id)
    if uow.metrics is not None:
        uow.metrics.incidents_created.labels(incident.origin).inc()
        if suspect is not None:
            uow.metrics.change_correlations.inc()
    return stored or incident


async def record_incident(
    conn: Connection,
    command: LogIncident,
    context: RequestContext,
    *,
    metrics: IncidentMetrics | None = None,
    now: datetime | None = None,
    number: int | None = None,
) -> Incident:
    """`log_incident_in` inside a transaction the caller holds on `conn` (tenant set)."""
    async with joining(conn, context, metrics) as uow:
        return await log_incident_in(uow, command, now=now, number=number)


async def log_new_incident(
    pool: asyncpg.Pool,
    command: LogIncident,
    context: RequestContext,
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """Store the incident and its created event atomically (Idempotency-Key: shared/http)."""
    number = await numbers.allocate(pool, context.tenant_id, "incident")
    async with unit_of_work(pool, context, metrics) as uow:
        incident = await log_incident_in(uow, command, number=number)
    return incident_view(incident)


async def locked_incident(
    uow: IncidentWork, incident_id: uuid.UUID, expected: int | None
) -> Incident:
    """The incident, locked for the rest of the unit of work; `NotFound`, `StaleVersion`."""
    incident = await uow.incidents.get(incident_id, lock=True)
    if incident is None:
        raise NotFound("incident", str(incident_id))
    if expected is not None and expected != incident.version:
        raise StaleVersion("the incident", incident.version, expected)
    return incident


async def update_incident_in(
    uow: IncidentWork,
    incident_id: uuid.UUID,
    wanted: dict[str, Any],
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> Incident:
    """Change fields; a new priority or CI retargets the SLA clocks, keeping elapsed time."""
    now = now or datetime.now(UTC)
    incident = await locked_incident(uow, incident_id, expected_version)
    settings = await uow.settings.get()
    services = policy = None
    if "ci_id" in wanted and wanted["ci_id"] != incident.ci_id:
        if wanted["ci_id"] is not None and (
            await uow.projection.ci_by_id(str(wanted["ci_id"])) is None
        ):
            raise invalid_field("ci_id", f"no configuration item {wanted['ci_id']} is known")
        services, policy = await affected(uow, wanted["ci_id"], ())
    change = domain.update(
        incident,
        wanted,
        actor=uow.context.actor,
        now=now,
        matrix=settings.matrix,
        services=services,
        sla_policy=policy.name if policy else None,
    )
    if change is None:
        return incident
    stored = await store_change(uow, change, "updated")
    if "priority" in change.changes or "sla_policy" in change.changes:
        await sla.retarget(
            uow,
            record="incident",
            record_id=incident.id,
            at=now,
            priority=stored.priority,
            policy=policy if "sla_policy" in change.changes else None,
        )
    return stored


async def update_incident(
    pool: asyncpg.Pool,
    incident_id: uuid.UUID,
    wanted: dict[str, Any],
    context: RequestContext,
    *,
    expected_version: int | None,
    metrics: IncidentMetrics | None = None,
) -> Incident:
    """Change fields; a new priority or CI retargets the SLA clocks, keeping elapsed time."""
    async with unit_of_work(pool, context, metrics) as uow:
        return await update_incident_in(uow, incident_id, wanted, expected_version=expected_version)


async def transition_incident(
    pool: asyncpg.Pool,
    incident_id: uuid.UUID,
    wanted: str,
    context: RequestContext,
    *,
    expected_version: int | None,
    hold_reason: str | None = None,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
    metrics: IncidentMetrics | None = None,
    automatic: bool = False,
) -> Incident:
    """Move an incident to another state and drive its SLA clocks accordingly."""
    async with unit_of_work(pool, context, metrics) as uow:
        incident = await locked_incident(uow, incident_id, expected_version)
        return await move_incident(
            uow,
            incident,
            wanted,
            hold_reason=hold_reason,
            resolution_code=resolution_code,
            resolution_notes=resolution_notes,
            automatic=automatic,
        )


async def move_incident(
    uow: IncidentWork,
    incident: Incident,
    wanted: str,
    *,
    now: datetime | None = None,
    hold_reason: str | None = None,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
    automatic: bool = False,
) -> Incident:
    """On a locked incident: the move, its history and event, its clocks, and its place in the
    auto-close queue (resolved: queued; otherwise: not)."""
    now = now or datetime.now(UTC)
    change = domain.transition(
        incident,
        wanted,
        actor=uow.context.actor,
        now=now,
        hold_reason=hold_reason,
        resolution_code=resolution_code,
        resolution_notes=resolution_notes,
        automatic=automatic,
    )
    stored = await store_change(uow, change, "transitioned")
    await drive_clocks(uow, incident, stored, now)
    if stored.state == "resolved":
        days = (await uow.settings.get()).auto_close_days
        await uow.incidents.queue_auto_close(stored.id, now + timedelta(days=days))
    elif incident.state == "resolved":
        await uow.incidents.unqueue_auto_close(stored.id)
    if uow.metrics is not None and wanted == "resolved":
        uow.metrics.incidents_resolved.inc()
        uow.metrics.time_to_resolve.observe((now - incident.created_at).total_seconds())
    return stored


async def drive_clocks(
    uow: IncidentWork, before: Incident, after: Incident, at: datetime
) -> list[sla.Fired]:
    """What a move does to the clocks: work started stops the response clock; on hold pauses
    (if the policy says so for the reason); back from hold resumes; resolved stops both;
    reopened runs the resolution clock again; cancelled stops both."""
    common: dict[str, Any] = {"record": "incident", "record_id": after.id, "at": at}
    fired: list[sla.Fired] = []
    if before.state == "on_hold":
        fired += await sla.resume(uow, **common)
    if after.state in ("in_progress", "on_hold", "resolved", "cancelled") and before.state == "new":
        fired += await sla.stop(uow, kind="response", **common)
    if after.state == "on_hold":
        fired += await sla.on_hold(uow, reason=after.hold_reason, **common)
    elif after.state in ("resolved", "cancelled"):
        fired += await sla.stop(uow, kind=("response", "resolution"), **common)
    elif after.state == "in_progress" and before.state == "resolved":
        fired += await sla.reopen(uow, **common)
    return fired


async def note_incident(
    uow: IncidentWork, incident: Incident, note: str, *, at: datetime | None = None
) -> dict[str, Any]:
    """A work note and its event (notes do not change the incident's version)."""
    stored = await uow.incidents.add_work_note(
        incident.id, author=uow.context.actor, note=note, at=at or datetime.now(UTC)
    )
    uow.record(str(incident.id), incident.version, [WorkNoteAddedV1(note=note)])
    return stored


async def add_work_note(
    pool: asyncpg.Pool, incident_id: uuid.UUID, note: str, context: RequestContext
) -> dict[str, Any]:
    """Append a work note (and its event); notes never change the incident's version."""
    async with unit_of_work(pool, context) as uow:
        incident = await locked_incident(uow, incident_id, None)
        return await note_incident(uow, incident, note)


async def record_major_review_in(
    uow: IncidentWork,
    incident_id: uuid.UUID,
    summary: str,
    lessons: str,
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> Incident:
    """Record the review of a major incident (needed before it can close); `Conflict` for an
    incident that is not major."""
    now = now or datetime.now(UTC)
    incident = await locked_incident(uow, incident_id, expected_version)
    if not incident.major:
        raise Conflict(
            "only a major incident has a review",
            fields=[FieldError("incident_id", "not a major incident", "path")],
        )
    actor = uow.context.actor
    review = {"summary": summary, "lessons": lessons, "reviewer": actor, "at": now.isoformat()}
    change = Change(
        domain.replace_review(incident, review, actor=actor, now=now),
        {"major_review": {"from": incident.major_review, "to": review}},
        [MajorReviewRecordedV1(summary=summary, lessons=lessons, reviewer=actor)],
    )
    return await store_change(uow, change, "major_review")


async def record_major_review(
    pool: asyncpg.Pool,
    incident_id: uuid.UUID,
    summary: str,
    lessons: str,
    context: RequestContext,
    *,
    expected_version: int | None,
) -> Incident:
    """Record the review of a major incident (needed before it can close)."""
    async with unit_of_work(pool, context) as uow:
        return await record_major_review_in(
            uow, incident_id, summary, lessons, expected_version=expected_version
        )
