"""Incident use cases: each runs in one transaction with its outbox events and SLA clocks.

Affected services and the SLA policy come from this service's projection of the config
service's events (`adapters/projections.py`), never from a call. Clocks start with the
incident; moves pause, resume, stop and reopen them; a priority or CI change retargets them
keeping the time already counted (`application/sla.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.incident.adapters import changes, numbers, projections, repository
from services.incident.application import problems, sla
from services.incident.domain import incident as domain
from services.incident.domain.alerts import AlertMapping
from services.incident.domain.incident import Change, Incident, log_incident
from services.incident.domain.priority import PriorityMatrix
from services.incident.metrics import IncidentMetrics
from shared import outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import (
    EventPayload,
    MajorReviewRecordedV1,
    WorkNoteAddedV1,
)
from shared.http.etags import stale_version
from shared.http.problems import Problem, not_found


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's incident settings (defaults when it never set any)."""

    matrix: PriorityMatrix = field(default_factory=PriorityMatrix.default)
    auto_close_days: int = 7
    alert_mapping: AlertMapping = field(default_factory=AlertMapping)
    trend_threshold: int = 3
    trend_window_seconds: int = 86_400
    trend_opens_problem: bool = False
    change_window_seconds: int = 86_400
    version: int = 0


DEFAULT_SETTINGS = TenantSettings()
# Parsed settings by (tenant, version, time of the write): every write bumps the version and
# stamps its time, so an entry never goes stale, not even one read inside a write that was then
# rolled back. It saves validating the matrix and mapping again on every request.
_PARSED: dict[tuple[str, int, datetime], TenantSettings] = {}
_PARSED_LIMIT = 1024


async def tenant_settings(conn: Connection, tenant_id: str) -> TenantSettings:
    """The tenant's settings, or the defaults (read in the caller's transaction)."""
    row = await conn.fetchrow(
        "SELECT priority_matrix, auto_close_days, alert_mapping, trend_threshold,"
        " trend_window_seconds, trend_opens_problem, change_window_seconds, version, updated_at"
        " FROM incident_settings WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return DEFAULT_SETTINGS
    key = (tenant_id, row["version"], row["updated_at"])
    parsed = _PARSED.get(key)
    if parsed is None:
        values = dict(row)
        del values["updated_at"]
        matrix = values.pop("priority_matrix")
        mapping = values.pop("alert_mapping")
        parsed = TenantSettings(
            matrix=PriorityMatrix.model_validate(matrix) if matrix else DEFAULT_SETTINGS.matrix,
            alert_mapping=(
                AlertMapping.model_validate(mapping) if mapping else DEFAULT_SETTINGS.alert_mapping
            ),
            **values,
        )
        if len(_PARSED) >= _PARSED_LIMIT:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[key] = parsed
    return parsed


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


async def append_events(
    conn: Connection, incident: Incident, events: list[EventPayload], context: RequestContext
) -> None:
    await outbox.append_many(
        conn,
        [outbox.Pending(e, str(incident.id), incident.version) for e in events],
        tenant_id=incident.tenant_id,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )


async def _affected(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID | None, named: tuple[str, ...]
) -> tuple[tuple[str, ...], projections.PolicySnapshot | None]:
    """Affected business services (named ones plus those the CI supports) and their policy."""
    services = set(named)
    if ci_id is not None:
        services.update(await projections.services_of_ci(conn, tenant_id, str(ci_id)))
    ordered = tuple(sorted(services))
    return ordered, await projections.policy_for(conn, tenant_id, ordered)


async def record_incident(
    conn: Connection,
    command: LogIncident,
    context: RequestContext,
    *,
    metrics: IncidentMetrics | None = None,
    now: datetime | None = None,
    number: int | None = None,
) -> Incident:
    """Inside the caller's transaction: store a new incident, its events and its clocks.

    `number` is the incident's number taken beforehand (`adapters/numbers.allocate`, which
    keeps concurrent creations from queueing on the tenant's counter); without one, the number
    is taken in this transaction."""
    now = now or datetime.now(UTC)
    tenant = context.tenant_id
    settings = await tenant_settings(conn, tenant)
    if command.ci_id is not None and (
        await projections.ci_by_id(conn, tenant, str(command.ci_id)) is None
    ):
        raise _unknown("ci_id", f"no configuration item {command.ci_id} is known")
    if command.parent_id is not None and (
        await repository.get(conn, tenant, command.parent_id) is None
    ):
        raise _unknown("parent_id", f"no incident {command.parent_id}")
    services, policy = await _affected(conn, tenant, command.ci_id, command.services)
    suspect = None
    if command.ci_id is not None:
        await changes.lock_ci(conn, tenant, command.ci_id, shared=True)
        suspect = await changes.recent_change(
            conn, tenant, command.ci_id, now, settings.change_window_seconds
        )
    known = await problems.known_error_for(conn, tenant, command.ci_id, services)
    fields = dict(vars(command))
    for name in ("title", "description", "impact", "urgency", "services"):
        fields.pop(name)
    incident, events = log_incident(
        tenant_id=tenant,
        title=command.title,
        description=command.description,
        impact=command.impact,
        urgency=command.urgency,
        actor=context.actor,
        now=now,
        matrix=settings.matrix,
        number=number or await repository.next_number(conn, tenant, "incident"),
        services=services,
        sla_policy=policy.name if policy else None,
        suspected_change=suspect.change_id if suspect else None,
        workaround=known.workaround if known else None,
        known_error_id=known.id if known else None,
        **fields,
    )
    if suspect is not None:
        events.append(suspect.suspicion(settings.change_window_seconds))
    await repository.insert(conn, incident)
    await repository.record_history(conn, incident, action="created", changes={})
    await append_events(conn, incident, events, context)
    await sla.start_clocks(
        conn,
        tenant=tenant,
        record="incident",
        record_id=incident.id,
        policy=policy,
        priority=incident.priority,
        at=now,
        actor=context.actor,
        correlation_id=context.correlation_id,
        metrics=metrics,
    )
    # A trend of incidents on the CI or a service suggests (or opens) a problem; an opened one
    # links this incident, which is then stored again as version 2.
    incident = await problems.after_incident_logged(conn, incident, settings, context, metrics)
    if metrics is not None:
        metrics.incidents_created.labels(incident.origin).inc()
        if suspect is not None:
            metrics.change_correlations.inc()
    return incident


def _unknown(field_name: str, detail: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        detail,
        errors=[{"in": "body", "field": field_name, "detail": detail}],
    )


async def log_new_incident(
    pool: asyncpg.Pool,
    command: LogIncident,
    context: RequestContext,
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """Store the incident and its created event atomically (Idempotency-Key: shared/http)."""
    number = await numbers.allocate(pool, context.tenant_id, "incident")
    async with tenant_transaction(pool, context.tenant_id) as conn:
        incident = await record_incident(conn, command, context, metrics=metrics, number=number)
    return incident_view(incident)


async def locked_incident(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID, expected: int | None
) -> Incident:
    incident = await repository.get(conn, tenant_id, incident_id, lock=True)
    if incident is None:
        raise not_found("incident", str(incident_id))
    if expected is not None and expected != incident.version:
        raise stale_version("the incident", incident.version, expected)
    return incident


async def store_change(
    conn: Connection, change: Change, action: str, context: RequestContext
) -> Incident:
    await repository.save(conn, change.incident)
    await repository.record_history(conn, change.incident, action=action, changes=change.changes)
    await append_events(conn, change.incident, change.events, context)
    return change.incident


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
    now = datetime.now(UTC)
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        incident = await locked_incident(conn, tenant, incident_id, expected_version)
        settings = await tenant_settings(conn, tenant)
        services = policy = None
        if "ci_id" in wanted and wanted["ci_id"] != incident.ci_id:
            if wanted["ci_id"] is not None and (
                await projections.ci_by_id(conn, tenant, str(wanted["ci_id"])) is None
            ):
                raise _unknown("ci_id", f"no configuration item {wanted['ci_id']} is known")
            services, policy = await _affected(conn, tenant, wanted["ci_id"], ())
        change = domain.update(
            incident,
            wanted,
            actor=context.actor,
            now=now,
            matrix=settings.matrix,
            services=services,
            sla_policy=policy.name if policy else None,
        )
        if change is None:
            return incident
        stored = await store_change(conn, change, "updated", context)
        if "priority" in change.changes or "sla_policy" in change.changes:
            await sla.retarget(
                conn,
                tenant=tenant,
                record="incident",
                record_id=incident.id,
                at=now,
                actor=context.actor,
                priority=stored.priority,
                policy=policy if "sla_policy" in change.changes else None,
                correlation_id=context.correlation_id,
                metrics=metrics,
            )
    return stored


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
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        incident = await locked_incident(conn, tenant, incident_id, expected_version)
        return await move_incident(
            conn,
            incident,
            wanted,
            context,
            hold_reason=hold_reason,
            resolution_code=resolution_code,
            resolution_notes=resolution_notes,
            metrics=metrics,
            automatic=automatic,
        )


async def move_incident(
    conn: Connection,
    incident: Incident,
    wanted: str,
    context: RequestContext,
    *,
    now: datetime | None = None,
    hold_reason: str | None = None,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
    metrics: IncidentMetrics | None = None,
    automatic: bool = False,
) -> Incident:
    """Inside the caller's transaction, on a locked incident: the move, its history and event,
    its clocks, and its place in the auto-close queue (resolved: queued; otherwise: not)."""
    now = now or datetime.now(UTC)
    change = domain.transition(
        incident,
        wanted,
        actor=context.actor,
        now=now,
        hold_reason=hold_reason,
        resolution_code=resolution_code,
        resolution_notes=resolution_notes,
        automatic=automatic,
    )
    stored = await store_change(conn, change, "transitioned", context)
    await drive_clocks(conn, incident, stored, now, context, metrics)
    if stored.state == "resolved":
        days = (await tenant_settings(conn, stored.tenant_id)).auto_close_days
        await repository.queue_auto_close(
            conn, stored.tenant_id, stored.id, now + timedelta(days=days)
        )
    elif incident.state == "resolved":
        await repository.unqueue_auto_close(conn, stored.tenant_id, stored.id)
    if metrics is not None and wanted == "resolved":
        metrics.incidents_resolved.inc()
        metrics.time_to_resolve.observe((now - incident.created_at).total_seconds())
    return stored


async def drive_clocks(
    conn: Connection,
    before: Incident,
    after: Incident,
    at: datetime,
    context: RequestContext,
    metrics: IncidentMetrics | None,
) -> list[sla.Fired]:
    """What a move does to the clocks: work started stops the response clock; on hold pauses
    (if the policy says so for the reason); back from hold resumes; resolved stops both;
    reopened runs the resolution clock again; cancelled stops both."""
    common: dict[str, Any] = {
        "tenant": after.tenant_id,
        "record": "incident",
        "record_id": after.id,
        "at": at,
        "actor": context.actor,
        "correlation_id": context.correlation_id,
        "metrics": metrics,
    }
    fired: list[sla.Fired] = []
    if before.state == "on_hold":
        fired += await sla.resume(conn, **common)
    if after.state in ("in_progress", "on_hold", "resolved", "cancelled") and before.state == "new":
        fired += await sla.stop(conn, kind="response", **common)
    if after.state == "on_hold":
        fired += await sla.on_hold(conn, reason=after.hold_reason, **common)
    elif after.state in ("resolved", "cancelled"):
        fired += await sla.stop(conn, kind=("response", "resolution"), **common)
    elif after.state == "in_progress" and before.state == "resolved":
        fired += await sla.reopen(conn, **common)
    return fired


async def add_work_note(
    pool: asyncpg.Pool, incident_id: uuid.UUID, note: str, context: RequestContext
) -> dict[str, Any]:
    """Append a work note (and its event); notes never change the incident's version."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        incident = await locked_incident(conn, context.tenant_id, incident_id, None)
        stored = await repository.add_work_note(
            conn,
            context.tenant_id,
            incident_id,
            author=context.actor,
            note=note,
            at=datetime.now(UTC),
        )
        await append_events(conn, incident, [WorkNoteAddedV1(note=note)], context)
    return stored


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
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        incident = await locked_incident(conn, context.tenant_id, incident_id, expected_version)
        if not incident.major:
            raise Problem(
                409,
                "Conflict",
                "only a major incident has a review",
                errors=[{"in": "path", "field": "incident_id", "detail": "not a major incident"}],
            )
        review = {
            "summary": summary,
            "lessons": lessons,
            "reviewer": context.actor,
            "at": now.isoformat(),
        }
        change = Change(
            domain.replace_review(incident, review, actor=context.actor, now=now),
            {"major_review": {"from": incident.major_review, "to": review}},
            [MajorReviewRecordedV1(summary=summary, lessons=lessons, reviewer=context.actor)],
        )
        return await store_change(conn, change, "major_review", context)
