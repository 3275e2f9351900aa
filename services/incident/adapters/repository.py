"""Incidents in PostgreSQL: plain, parameterised SQL, always scoped to a tenant.

The numbered, versioned record itself (insert, get, save, history, search) is the shared
repository (`shared/records/sql.py`) over the `incidents` table; this module adds what only
incidents have (work notes, the auto-close queue) and the incident filter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.incident.domain.incident import Incident
from shared.db import Connection
from shared.records import sql
from shared.records.sql import Condition

INCIDENTS = sql.RecordTable(
    Incident,
    table="incidents",
    history="incident_history",
    key="incident_id",
    kind="incident",
    what="the incident",
    arrays=("services",),
)


async def insert(conn: Connection, incident: Incident) -> None:
    """Store a new incident."""
    await INCIDENTS.insert(conn, incident)


async def save(conn: Connection, incident: Incident) -> None:
    """Store a new version of an incident the caller holds locked."""
    await INCIDENTS.save(conn, incident)


async def get(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID, *, lock: bool = False
) -> Incident | None:
    """The tenant's incident with this id, or None (locked for the transaction with `lock`)."""
    return await INCIDENTS.get(conn, tenant_id, incident_id, lock=lock)


async def record_history(
    conn: Connection,
    incident: Incident,
    *,
    action: str,
    changes: dict[str, Any],
) -> None:
    """Keep the version: who, when, what changed."""
    await INCIDENTS.record_history(conn, incident, action=action, changes=changes)


async def history(conn: Connection, tenant_id: str, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of an incident, oldest first."""
    return await INCIDENTS.history(conn, tenant_id, incident_id)


async def add_work_note(
    conn: Connection,
    tenant_id: str,
    incident_id: uuid.UUID,
    *,
    author: str,
    note: str,
    at: datetime,
) -> dict[str, Any]:
    """Append a work note."""
    row = await conn.fetchrow(
        "INSERT INTO work_notes (tenant_id, incident_id, at, author, note)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id, at, author, note",
        tenant_id,
        incident_id,
        at,
        author,
        note,
    )
    assert row is not None
    return dict(row)


async def work_notes(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID
) -> list[dict[str, Any]]:
    """An incident's work notes, oldest first."""
    rows = await conn.fetch(
        "SELECT id, at, author, note FROM work_notes WHERE tenant_id = $1 AND incident_id = $2"
        " ORDER BY id",
        tenant_id,
        incident_id,
    )
    return [dict(r) for r in rows]


async def next_number(conn: Connection, tenant_id: str, kind: str) -> int:
    """The tenant's next record number of a kind (gap-free: taken in the creating transaction)."""
    return await sql.next_number(conn, tenant_id, kind)


async def queue_auto_close(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID, due_at: datetime
) -> None:
    """Queue a resolved incident to close automatically at `due_at` (again: a new due time)."""
    await conn.execute(
        "INSERT INTO auto_close_queue (tenant_id, incident_id, due_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, incident_id) DO UPDATE SET due_at = EXCLUDED.due_at",
        tenant_id,
        incident_id,
        due_at,
    )


async def unqueue_auto_close(conn: Connection, tenant_id: str, incident_id: uuid.UUID) -> None:
    """The incident left `resolved` (reopened, closed): nothing to close automatically."""
    await conn.execute(
        "DELETE FROM auto_close_queue WHERE tenant_id = $1 AND incident_id = $2",
        tenant_id,
        incident_id,
    )


@dataclass(frozen=True)
class IncidentFilter:
    """What a list asks for; None means any."""

    states: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    service: str | None = None
    ci_id: uuid.UUID | None = None
    assignee: str | None = None
    assignment_group: str | None = None
    breached: bool | None = None
    major: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    resolved_after: datetime | None = None
    resolved_before: datetime | None = None


async def search(
    conn: Connection,
    tenant_id: str,
    where: IncidentFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Incident]:
    """Incidents matching the filter, newest first, after a (created_at, id) position."""
    return await INCIDENTS.search(conn, tenant_id, _conditions(where), after=after, limit=limit)


def _conditions(where: IncidentFilter) -> list[Condition]:
    """The filter as SQL: each part holds for any value when it is empty or None."""
    return [
        Condition("(cardinality({p}::text[]) = 0 OR r.state = ANY({p}))", list(where.states)),
        Condition(
            "(cardinality({p}::smallint[]) = 0 OR r.priority = ANY({p}))", list(where.priorities)
        ),
        Condition("({p}::text IS NULL OR r.services @> ARRAY[{p}::text])", where.service),
        Condition("({p}::uuid IS NULL OR r.ci_id = {p})", where.ci_id),
        Condition("({p}::text IS NULL OR r.assignee = {p})", where.assignee),
        Condition("({p}::text IS NULL OR r.assignment_group = {p})", where.assignment_group),
        Condition(
            "({p}::boolean IS NULL OR {p} = EXISTS (SELECT 1 FROM sla_clocks s"
            " WHERE s.tenant_id = r.tenant_id AND s.record = 'incident'"
            " AND s.record_id = r.id::text AND s.breached_at IS NOT NULL))",
            where.breached,
        ),
        Condition("({p}::boolean IS NULL OR r.major = {p})", where.major),
        Condition("({p}::timestamptz IS NULL OR r.created_at >= {p})", where.created_after),
        Condition("({p}::timestamptz IS NULL OR r.created_at < {p})", where.created_before),
        Condition("({p}::timestamptz IS NULL OR r.resolved_at >= {p})", where.resolved_after),
        Condition("({p}::timestamptz IS NULL OR r.resolved_at < {p})", where.resolved_before),
    ]
