"""Change control in PostgreSQL: the tenant's configuration (`change_control`) and the
projection of the change service's changes (`change_projection`, kept by the consumer
`config-change-projection` from `itsm.change.events`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from services.config.domain.change_control import ChangeControl, ProjectedChange
from shared.db import Connection


async def control(conn: Connection, tenant_id: str) -> ChangeControl:
    """The tenant's configuration (version 0, no class, when it never saved one)."""
    row = await conn.fetchrow(
        "SELECT classes, version FROM change_control WHERE tenant_id = $1", tenant_id
    )
    if row is None:
        return ChangeControl()
    return ChangeControl(frozenset(row["classes"]), row["version"])


async def save_control(
    conn: Connection,
    tenant_id: str,
    classes: Sequence[str],
    *,
    version: int,
    actor: str,
    now: datetime,
) -> None:
    """Store the configuration at `version` (the caller checked the one it replaces)."""
    await conn.execute(
        "INSERT INTO change_control (tenant_id, classes, version, updated_at, updated_by)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET"
        " classes = EXCLUDED.classes, version = EXCLUDED.version,"
        " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
        tenant_id,
        list(classes),
        version,
        now,
        actor,
    )


async def lock_control(conn: Connection, tenant_id: str) -> None:
    """Serialise replacements of the tenant's configuration (there may be no row yet)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('change_control:' || $1, 0))", tenant_id
    )


async def projected_change(
    conn: Connection, tenant_id: str, change_id: uuid.UUID
) -> ProjectedChange | None:
    """The change as the projection knows it, or None."""
    row = await conn.fetchrow(
        "SELECT change_id, number, state, affected_cis FROM change_projection"
        " WHERE tenant_id = $1 AND change_id = $2",
        tenant_id,
        change_id,
    )
    if row is None:
        return None
    return ProjectedChange(
        row["change_id"], row["number"], row["state"], frozenset(row["affected_cis"])
    )


async def change_created(
    conn: Connection,
    tenant_id: str,
    change_id: uuid.UUID,
    *,
    number: int,
    affected_cis: Sequence[uuid.UUID],
    version: int,
    at: datetime,
) -> None:
    """A new change, in state `new`; a row already there (the event again) stays as it is."""
    await conn.execute(
        "INSERT INTO change_projection (tenant_id, change_id, number, state, affected_cis,"
        " version, updated_at) VALUES ($1, $2, $3, 'new', $4, $5, $6)"
        " ON CONFLICT (tenant_id, change_id) DO NOTHING",
        tenant_id,
        change_id,
        number,
        list(affected_cis),
        version,
        at,
    )


async def change_cis(
    conn: Connection,
    tenant_id: str,
    change_id: uuid.UUID,
    affected_cis: Sequence[uuid.UUID],
    *,
    version: int,
    at: datetime,
) -> None:
    """The change's affected CIs were edited (at `version`; an older version changes nothing)."""
    await conn.execute(
        "UPDATE change_projection SET affected_cis = $3, version = $4, updated_at = $5"
        " WHERE tenant_id = $1 AND change_id = $2 AND version <= $4",
        tenant_id,
        change_id,
        list(affected_cis),
        version,
        at,
    )


async def change_moved(
    conn: Connection,
    tenant_id: str,
    change_id: uuid.UUID,
    *,
    number: int,
    state: str,
    version: int,
    at: datetime,
) -> None:
    """The change entered `state` (at `version`; an older version changes nothing). A change
    whose creation the projection never saw is kept with no affected CIs."""
    await conn.execute(
        "INSERT INTO change_projection (tenant_id, change_id, number, state, version, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, change_id) DO UPDATE SET"
        " state = EXCLUDED.state, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE change_projection.version <= EXCLUDED.version",
        tenant_id,
        change_id,
        number,
        state,
        version,
        at,
    )
