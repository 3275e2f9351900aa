"""Incidents in PostgreSQL: plain, parameterised SQL, always scoped to a tenant."""

from __future__ import annotations

import uuid

from services.incident.domain.incident import Incident
from shared.db import Connection

_COLUMNS = (
    "id, tenant_id, title, description, impact, urgency, priority, state, version,"
    " created_at, created_by"
)


async def insert(conn: Connection, incident: Incident) -> None:
    """Store a new incident."""
    await conn.execute(
        f"INSERT INTO incidents ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",  # noqa: S608 - constant column list
        incident.id,
        incident.tenant_id,
        incident.title,
        incident.description,
        incident.impact,
        incident.urgency,
        incident.priority,
        incident.state,
        incident.version,
        incident.created_at,
        incident.created_by,
    )


async def get(conn: Connection, tenant_id: str, incident_id: uuid.UUID) -> Incident | None:
    """The tenant's incident with this id, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM incidents WHERE tenant_id = $1 AND id = $2",  # noqa: S608 - constant column list
        tenant_id,
        incident_id,
    )
    return Incident(**dict(row)) if row else None
