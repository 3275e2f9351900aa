"""Outage records: record one (directly, or marked on a major incident), change it with
If-Match (its end, corrected times, a withdrawal with a reason), read and list them.

The business services an outage names are checked against this service's projection of the
config service's catalogue (`uow.projection`): an id or a name the tenant has, stored as the
id; anything else is 422 naming `services[i]`. An outage on an incident needs a major incident
of the tenant (422 naming `incident_id`; on `POST /incidents/{id}/outages`, 404 for an unknown
incident and 409 for one that is not major). A major incident's open outages end when it is
resolved (`application/resolution.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.incident.adapters.outages import OutageFilter
from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import IncidentWork
from services.incident.domain import outage as domain
from services.incident.domain.outage import Outage
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.errors import Conflict, FieldError, NotFound, StaleVersion, ValidationFailed
from shared.events.catalogue import OutageKind


@dataclass(frozen=True)
class RecordOutage:
    """Command: record an outage or degradation of business services."""

    services: tuple[str, ...]
    kind: OutageKind
    start: datetime
    end: datetime | None = None
    incident_id: uuid.UUID | None = None
    summary: str = ""


def outage_view(outage: Outage) -> dict[str, Any]:
    """The outage as the API shows it (JSON-ready)."""
    return {
        "id": str(outage.id),
        "services": list(outage.services),
        "kind": outage.kind,
        "start": outage.start.isoformat(),
        "end": outage.end.isoformat() if outage.end else None,
        "incident_id": str(outage.incident_id) if outage.incident_id else None,
        "summary": outage.summary,
        "withdrawn": outage.withdrawn,
        "withdrawn_reason": outage.withdrawn_reason,
        "version": outage.version,
        "created_at": outage.created_at.isoformat(),
        "created_by": outage.created_by,
        "updated_at": outage.updated_at.isoformat(),
        "updated_by": outage.updated_by,
    }


async def known_services(uow: IncidentWork, named: tuple[str, ...]) -> tuple[str, ...]:
    """The business service ids the names (ids or names) stand for; 422 naming each unknown."""
    found: list[str] = []
    problems: list[FieldError] = []
    for index, name in enumerate(named):
        service = await uow.projection.service_by_id(name) or await uow.projection.service_by_name(
            name
        )
        if service is None:
            problems.append(
                FieldError(f"services[{index}]", f"no business service {name} is known")
            )
        else:
            found.append(service.id)
    if problems:
        raise ValidationFailed(problems)
    return tuple(found)


async def record_outage_in(
    uow: IncidentWork,
    command: RecordOutage,
    *,
    on_incident: bool = False,
    now: datetime | None = None,
) -> Outage:
    """Record the outage and its event in the unit of work (see the module's refusals)."""
    now = now or datetime.now(UTC)
    if command.incident_id is not None:
        incident = await uow.incidents.get(command.incident_id)
        if incident is None:
            if on_incident:
                raise NotFound("incident", str(command.incident_id))
            raise ValidationFailed([FieldError("incident_id", "no such incident")])
        if not incident.major:
            if on_incident:
                raise Conflict("the incident is not a major incident: outages mark major ones")
            raise ValidationFailed([FieldError("incident_id", "not a major incident")])
    services = await known_services(uow, command.services)
    outage, recorded = domain.record(
        tenant_id=uow.tenant_id,
        services=services,
        kind=command.kind,
        start=command.start,
        end=command.end,
        incident_id=command.incident_id,
        summary=command.summary,
        actor=uow.context.actor,
        now=now,
    )
    await uow.outages.insert(outage)
    uow.record(outage.subject, outage.version, [recorded])
    if uow.metrics is not None:
        uow.metrics.outages_recorded.labels(outage.kind).inc()
    return outage


async def record_outage(
    pool: asyncpg.Pool,
    command: RecordOutage,
    context: RequestContext,
    *,
    on_incident: bool = False,
    metrics: IncidentMetrics | None = None,
) -> Outage:
    """Record an outage (`OutageRecordedV1`)."""
    async with unit_of_work(pool, context, metrics) as uow:
        return await record_outage_in(uow, command, on_incident=on_incident)


async def update_outage_in(
    uow: IncidentWork,
    outage_id: uuid.UUID,
    wanted: dict[str, Any],
    *,
    expected_version: int,
    now: datetime | None = None,
) -> Outage:
    """Change the outage read at `expected_version` (`StaleVersion` otherwise) and announce it
    (`OutageUpdatedV1`); nothing to change keeps the version."""
    now = now or datetime.now(UTC)
    outage = await uow.outages.get(outage_id, lock=True)
    if outage is None:
        raise NotFound("outage", str(outage_id))
    if outage.version != expected_version:
        raise StaleVersion("the outage", outage.version, expected_version)
    changed = domain.update(outage, wanted, actor=uow.context.actor, now=now)
    if changed is None:
        return outage
    after, event = changed
    await uow.outages.save(after)
    uow.record(after.subject, after.version, [event])
    return after


async def update_outage(
    pool: asyncpg.Pool,
    outage_id: uuid.UUID,
    wanted: dict[str, Any],
    context: RequestContext,
    *,
    expected_version: int,
) -> Outage:
    """Change an outage (If-Match) and announce it."""
    async with unit_of_work(pool, context) as uow:
        return await update_outage_in(uow, outage_id, wanted, expected_version=expected_version)


async def read_outage(pool: asyncpg.Pool, context: RequestContext, outage_id: uuid.UUID) -> Outage:
    """The tenant's outage, or `NotFound`."""
    async with unit_of_work(pool, context) as uow:
        outage = await uow.outages.get(outage_id)
    if outage is None:
        raise NotFound("outage", str(outage_id))
    return outage


async def list_outages(
    pool: asyncpg.Pool,
    context: RequestContext,
    where: OutageFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Outage]:
    """The tenant's outages, latest start first (up to `limit`)."""
    async with unit_of_work(pool, context) as uow:
        return await uow.outages.search(where, after=after, limit=limit)
