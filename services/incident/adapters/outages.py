"""Outages in PostgreSQL (migration 0013): one row per outage, at its latest version."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.incident.domain.outage import Outage
from shared.db import Connection
from shared.errors import StaleVersion

_COLUMNS = (
    "tenant_id, id, services, kind, start_at, end_at, incident_id, summary, withdrawn,"
    " withdrawn_reason, version, created_at, created_by, updated_at, updated_by"
)


@dataclass(frozen=True)
class OutageFilter:
    """What `GET /outages` narrows by (None: any)."""

    service: str | None = None
    kind: str | None = None
    incident_id: uuid.UUID | None = None
    open: bool | None = None
    withdrawn: bool | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


def _outage(row: asyncpg.Record) -> Outage:
    values = dict(row)
    values["services"] = tuple(values["services"])
    values["start"] = values.pop("start_at")
    values["end"] = values.pop("end_at")
    return Outage(**values)


async def get(
    conn: Connection, tenant_id: str, outage_id: uuid.UUID, *, lock: bool = False
) -> Outage | None:
    """The tenant's outage (locked for the transaction with `lock`), or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM outages WHERE tenant_id = $1 AND id = $2"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        outage_id,
    )
    return None if row is None else _outage(row)


async def open_of_incident(
    conn: Connection, tenant_id: str, incident_id: uuid.UUID
) -> list[Outage]:
    """The incident's outages still lasting and not withdrawn, locked, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM outages WHERE tenant_id = $1 AND incident_id = $2"  # noqa: S608
        " AND end_at IS NULL AND NOT withdrawn ORDER BY start_at, id FOR UPDATE",
        tenant_id,
        incident_id,
    )
    return [_outage(r) for r in rows]


async def insert(conn: Connection, outage: Outage) -> None:
    """Store a new outage (version 1)."""
    await conn.execute(
        f"INSERT INTO outages ({_COLUMNS})"  # noqa: S608 - constant columns
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        *_values(outage),
    )


async def save(conn: Connection, outage: Outage) -> None:
    """Store the outage's next version over exactly the version before (`StaleVersion` if not)."""
    status = await conn.execute(
        "UPDATE outages SET services = $3, kind = $4, start_at = $5, end_at = $6,"
        " incident_id = $7, summary = $8, withdrawn = $9, withdrawn_reason = $10, version = $11,"
        " updated_at = $12, updated_by = $13"
        " WHERE tenant_id = $1 AND id = $2 AND version = $11 - 1",
        *_values(outage)[:11],
        outage.updated_at,
        outage.updated_by,
    )
    if status != "UPDATE 1":
        raise StaleVersion("the outage", outage.version, outage.version - 1)


def _values(outage: Outage) -> list[Any]:
    return [
        outage.tenant_id,
        outage.id,
        list(outage.services),
        outage.kind,
        outage.start,
        outage.end,
        outage.incident_id,
        outage.summary,
        outage.withdrawn,
        outage.withdrawn_reason,
        outage.version,
        outage.created_at,
        outage.created_by,
        outage.updated_at,
        outage.updated_by,
    ]


async def search(
    conn: Connection,
    tenant_id: str,
    where: OutageFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Outage]:
    """The tenant's outages, latest start first, after the keyset position (start, id)."""
    clauses = ["tenant_id = $1"]
    args: list[Any] = [tenant_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.service is not None:
        clauses.append(f"{arg(where.service)} = ANY(services)")
    if where.kind is not None:
        clauses.append(f"kind = {arg(where.kind)}")
    if where.incident_id is not None:
        clauses.append(f"incident_id = {arg(where.incident_id)}")
    if where.open is not None:
        clauses.append(
            "(end_at IS NULL AND NOT withdrawn)"
            if where.open
            else "(end_at IS NOT NULL OR withdrawn)"
        )
    if where.withdrawn is not None:
        clauses.append("withdrawn" if where.withdrawn else "NOT withdrawn")
    if where.started_after is not None:
        clauses.append(f"start_at >= {arg(where.started_after)}")
    if where.started_before is not None:
        clauses.append(f"start_at < {arg(where.started_before)}")
    if after is not None:
        clauses.append(f"(start_at, id) < ({arg(after[0])}, {arg(after[1])})")
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM outages WHERE {' AND '.join(clauses)}"  # noqa: S608 - parameterised
        f" ORDER BY start_at DESC, id DESC LIMIT {arg(limit)}",
        *args,
    )
    return [_outage(r) for r in rows]
