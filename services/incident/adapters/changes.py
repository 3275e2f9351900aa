"""Changes implemented on CIs, as the change service announced them (`change_implementations`),
and the (tenant, CI) lock that makes correlating them with incidents exactly-once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db import Connection
from shared.events.catalogue import ChangeSuspectedV1


@dataclass(frozen=True)
class ImplementedChange:
    """A change implemented on a CI."""

    change_id: str
    ci_id: uuid.UUID
    implemented_at: datetime

    def suspicion(self, window_seconds: int) -> ChangeSuspectedV1:
        """The event that flags an incident as possibly caused by this change."""
        return ChangeSuspectedV1(
            change_id=self.change_id,
            ci_id=str(self.ci_id),
            implemented_at=self.implemented_at,
            window_seconds=window_seconds,
        )


async def lock_ci(conn: Connection, tenant_id: str, ci_id: uuid.UUID, *, shared: bool) -> None:
    """Hold the (tenant, CI) correlation lock until the transaction ends: shared by incident
    creations (they never wait for each other), exclusive for a change being recorded."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(
        f"SELECT {function}(hashtextextended('change-correlation:' || $1 || ':' || $2, 0))",
        tenant_id,
        str(ci_id),
    )


async def recent_change(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID, at: datetime, window_seconds: int
) -> ImplementedChange | None:
    """The change implemented on the CI most recently within the window before `at`."""
    row = await conn.fetchrow(
        "SELECT change_id, implemented_at FROM change_implementations"
        " WHERE tenant_id = $1 AND ci_id = $2 AND implemented_at <= $3 AND implemented_at >= $4"
        " ORDER BY implemented_at DESC, change_id LIMIT 1",
        tenant_id,
        ci_id,
        at,
        at - timedelta(seconds=window_seconds),
    )
    if row is None:
        return None
    return ImplementedChange(row["change_id"], ci_id, row["implemented_at"])


async def record(
    conn: Connection,
    tenant_id: str,
    change: ImplementedChange,
    title: str,
    outcome: str,
    now: datetime,
) -> bool:
    """Record a change on a CI; False when it was recorded before (a repeated announcement)."""
    inserted = await conn.fetchval(
        "INSERT INTO change_implementations (tenant_id, change_id, ci_id, implemented_at,"
        " title, outcome, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT DO NOTHING RETURNING true",
        tenant_id,
        change.change_id,
        change.ci_id,
        change.implemented_at,
        title,
        outcome,
        now,
    )
    return bool(inserted)


async def implemented_at(conn: Connection, tenant_id: str, change_id: str) -> datetime | None:
    """When a recorded change was implemented (its latest CI), or None if unknown."""
    value = await conn.fetchval(
        "SELECT max(implemented_at) FROM change_implementations"
        " WHERE tenant_id = $1 AND change_id = $2",
        tenant_id,
        change_id,
    )
    return value if isinstance(value, datetime) else None


async def incidents_after(
    conn: Connection, tenant_id: str, change: ImplementedChange, window_seconds: int
) -> list[uuid.UUID]:
    """Open or resolved incidents on the change's CI logged within the window after it."""
    rows = await conn.fetch(
        "SELECT id FROM incidents WHERE tenant_id = $1 AND ci_id = $2"
        " AND created_at >= $3 AND created_at <= $4"
        " AND state NOT IN ('closed', 'cancelled') ORDER BY created_at, id",
        tenant_id,
        change.ci_id,
        change.implemented_at,
        change.implemented_at + timedelta(seconds=window_seconds),
    )
    return [r["id"] for r in rows]
