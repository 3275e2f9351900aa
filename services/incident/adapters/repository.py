"""Incidents in PostgreSQL: plain, parameterised SQL, always scoped to a tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from services.incident.domain.incident import Incident
from shared.db import Connection

_FIELDS = [f.name for f in fields(Incident)]
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(_FIELDS) + 1))
_SERVICES = _FIELDS.index("services")
_SETS = ", ".join(f"{name} = ${i}" for i, name in enumerate(_FIELDS, start=1) if i > 2)


def _row(incident: Incident) -> list[Any]:
    values = [getattr(incident, name) for name in _FIELDS]  # not asdict: it deep-copies
    values[_SERVICES] = list(incident.services)
    return values


def _incident(row: Any) -> Incident:
    values = dict(row)
    values["services"] = tuple(values["services"] or ())
    return Incident(**values)


async def insert(conn: Connection, incident: Incident) -> None:
    """Store a new incident."""
    await conn.execute(
        f"INSERT INTO incidents ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",  # noqa: S608 - constant column list
        *_row(incident),
    )


async def save(conn: Connection, incident: Incident) -> None:
    """Store a new version of an incident the caller holds locked."""
    await conn.execute(
        f"UPDATE incidents SET {_SETS}"  # noqa: S608 - constant columns
        " WHERE id = $1 AND tenant_id = $2",
        *_row(incident),
    )


async def get(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID, *, lock: bool = False
) -> Incident | None:
    """The tenant's incident with this id, or None (locked for the transaction with `lock`)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM incidents WHERE tenant_id = $1 AND id = $2"  # noqa: S608 - constant column list
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        incident_id,
    )
    return _incident(row) if row else None


async def record_history(
    conn: Connection,
    incident: Incident,
    *,
    action: str,
    changes: dict[str, Any],
) -> None:
    """Keep the version: who, when, what changed."""
    await conn.execute(
        "INSERT INTO incident_history (tenant_id, incident_id, version, at, actor, action,"
        " changes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        incident.tenant_id,
        incident.id,
        incident.version,
        incident.updated_at,
        incident.updated_by,
        action,
        changes,
    )


async def history(conn: Connection, tenant_id: str, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of an incident, oldest first."""
    rows = await conn.fetch(
        "SELECT version, at, actor, action, changes FROM incident_history"
        " WHERE tenant_id = $1 AND incident_id = $2 ORDER BY version",
        tenant_id,
        incident_id,
    )
    return [dict(r) for r in rows]


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
    number = await conn.fetchval(
        "INSERT INTO record_numbers (tenant_id, kind, last) VALUES ($1, $2, 1)"
        " ON CONFLICT (tenant_id, kind) DO UPDATE SET last = record_numbers.last + 1"
        " RETURNING last",
        tenant_id,
        kind,
    )
    assert isinstance(number, int)
    return number


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
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM incidents WHERE tenant_id = $1"  # noqa: S608 - constant column list
        " AND (cardinality($2::text[]) = 0 OR state = ANY($2))"
        " AND (cardinality($3::smallint[]) = 0 OR priority = ANY($3))"
        " AND ($4::text IS NULL OR services @> ARRAY[$4::text])"
        " AND ($5::uuid IS NULL OR ci_id = $5)"
        " AND ($6::text IS NULL OR assignee = $6)"
        " AND ($7::text IS NULL OR assignment_group = $7)"
        " AND ($8::boolean IS NULL OR $8 = EXISTS (SELECT 1 FROM sla_clocks s"
        " WHERE s.tenant_id = incidents.tenant_id AND s.record = 'incident'"
        " AND s.record_id = incidents.id::text AND s.breached_at IS NOT NULL))"
        " AND ($9::boolean IS NULL OR major = $9)"
        " AND ($10::timestamptz IS NULL OR created_at >= $10)"
        " AND ($11::timestamptz IS NULL OR created_at < $11)"
        " AND ($12::timestamptz IS NULL OR resolved_at >= $12)"
        " AND ($13::timestamptz IS NULL OR resolved_at < $13)"
        " AND ($14::timestamptz IS NULL OR (created_at, id) < ($14, $15))"
        " ORDER BY created_at DESC, id DESC LIMIT $16",
        tenant_id,
        list(where.states),
        list(where.priorities),
        where.service,
        where.ci_id,
        where.assignee,
        where.assignment_group,
        where.breached,
        where.major,
        where.created_after,
        where.created_before,
        where.resolved_after,
        where.resolved_before,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_incident(r) for r in rows]
