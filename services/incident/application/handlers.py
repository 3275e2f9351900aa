"""Incident use cases: each runs in one transaction with its outbox events."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.incident.adapters import repository
from services.incident.domain.incident import Incident, log_incident
from shared import outbox
from shared.db import Connection, tenant_transaction
from shared.http import idempotency
from shared.http.context import RequestContext


@dataclass(frozen=True)
class LogIncident:
    """Command: log a new incident."""

    title: str
    description: str
    impact: int
    urgency: int


@dataclass(frozen=True)
class Created:
    """What a create returns: the response body, and whether it replays an earlier request."""

    body: dict[str, Any]
    replayed: bool


def incident_view(incident: Incident) -> dict[str, Any]:
    """The incident as the API shows it."""
    view = asdict(incident)
    view["id"] = str(incident.id)
    view["created_at"] = incident.created_at.isoformat()
    return view


async def record_incident(
    conn: Connection, command: LogIncident, context: RequestContext
) -> Incident:
    """Inside the caller's transaction: store a new incident and its created event."""
    incident, event = log_incident(
        tenant_id=context.tenant_id,
        title=command.title,
        description=command.description,
        impact=command.impact,
        urgency=command.urgency,
        actor=context.actor,
        now=datetime.now(UTC),
    )
    await repository.insert(conn, incident)
    await outbox.append(
        conn,
        event,
        subject=str(incident.id),
        tenant_id=incident.tenant_id,
        sequence=incident.version,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )
    return incident


async def log_new_incident(
    pool: asyncpg.Pool,
    command: LogIncident,
    context: RequestContext,
    idempotency_key: str | None = None,
) -> Created:
    """Store the incident and its created event atomically; honour an idempotency key."""
    fingerprint = idempotency.request_fingerprint("POST", "/incidents", asdict(command))
    async with tenant_transaction(pool, context.tenant_id) as conn:
        earlier = await idempotency.claim(conn, context.tenant_id, idempotency_key, fingerprint)
        if earlier is not None:
            return Created(earlier.body, replayed=True)
        incident = await record_incident(conn, command, context)
        body = incident_view(incident)
        await idempotency.remember(conn, context.tenant_id, idempotency_key, 201, body)
    return Created(body, replayed=False)
