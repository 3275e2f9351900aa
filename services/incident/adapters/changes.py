"""Changes on CIs (`change_implementations`): from the first sign of a change on a CI (a CI
written under its id, or its implementation announced) to the end of its implementation, as the
config and change services announced them; and the (tenant, CI) lock that makes correlating
them with incidents exactly-once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db import Connection
from shared.events.catalogue import ChangeSuspectedV1


@dataclass(frozen=True)
class ImplementedChange:
    """A change on a CI: seen on it first at `started_at` (None: at `implemented_at`), last at
    `implemented_at` (the end of its implementation once announced, else its latest CI write).
    Incidents logged on the CI from the start until the window after the end are suspects."""

    change_id: str
    ci_id: uuid.UUID
    implemented_at: datetime
    started_at: datetime | None = None

    @property
    def since(self) -> datetime:
        """When the change was first seen on the CI."""
        return self.started_at or self.implemented_at

    def suspects(self, window_seconds: int) -> tuple[datetime, datetime]:
        """The instants between which an incident logged on the CI is suspected (inclusive)."""
        return self.since, self.implemented_at + timedelta(seconds=window_seconds)

    def spanning(self, other: ImplementedChange) -> ImplementedChange:
        """The change on the CI from the earlier start to the later end of the two."""
        return ImplementedChange(
            self.change_id,
            self.ci_id,
            max(self.implemented_at, other.implemented_at),
            min(self.since, other.since),
        )

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
    """The change on the CI whose suspects include an incident logged at `at`, the most
    recently implemented if several are."""
    row = await conn.fetchrow(
        "SELECT change_id, started_at, implemented_at FROM change_implementations"
        " WHERE tenant_id = $1 AND ci_id = $2 AND started_at <= $3 AND implemented_at >= $4"
        " ORDER BY implemented_at DESC, change_id LIMIT 1",
        tenant_id,
        ci_id,
        at,
        at - timedelta(seconds=window_seconds),
    )
    if row is None:
        return None
    return ImplementedChange(row["change_id"], ci_id, row["implemented_at"], row["started_at"])


async def record(
    conn: Connection,
    tenant_id: str,
    change: ImplementedChange,
    title: str | None,
    outcome: str | None,
    now: datetime,
) -> tuple[ImplementedChange | None, ImplementedChange]:
    """Record a sign of a change on a CI (the caller holds the CI's lock): the change on the CI
    as recorded before (None: new) and after, spanning both. Equal: nothing new (a repeated
    announcement, or a CI write within the implementation already known). Title and outcome
    are kept once announced."""
    row = await conn.fetchrow(
        "SELECT started_at, implemented_at FROM change_implementations"
        " WHERE tenant_id = $1 AND change_id = $2 AND ci_id = $3 FOR UPDATE",
        tenant_id,
        change.change_id,
        change.ci_id,
    )
    before = None
    if row is not None:
        before = ImplementedChange(
            change.change_id, change.ci_id, row["implemented_at"], row["started_at"]
        )
    after = change.spanning(before or change)
    await conn.execute(
        "INSERT INTO change_implementations (tenant_id, change_id, ci_id, started_at,"
        " implemented_at, title, outcome, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (tenant_id, change_id, ci_id) DO UPDATE SET"
        " started_at = EXCLUDED.started_at, implemented_at = EXCLUDED.implemented_at,"
        " title = coalesce(EXCLUDED.title, change_implementations.title),"
        " outcome = coalesce(EXCLUDED.outcome, change_implementations.outcome),"
        " recorded_at = EXCLUDED.recorded_at",
        tenant_id,
        change.change_id,
        change.ci_id,
        after.since,
        after.implemented_at,
        title,
        outcome,
        now,
    )
    return before, after


async def implemented_at(conn: Connection, tenant_id: str, change_id: str) -> datetime | None:
    """When a recorded change was implemented (its latest CI), or None if unknown."""
    value = await conn.fetchval(
        "SELECT max(implemented_at) FROM change_implementations"
        " WHERE tenant_id = $1 AND change_id = $2",
        tenant_id,
        change_id,
    )
    return value if isinstance(value, datetime) else None


async def incidents_suspecting(
    conn: Connection,
    tenant_id: str,
    change: ImplementedChange,
    window_seconds: int,
    *,
    known: ImplementedChange | None = None,
) -> list[uuid.UUID]:
    """Open or resolved incidents on the change's CI logged among its suspects, leaving out
    those among the suspects of `known` (the change on the CI as recorded before: its
    incidents were flagged then, or when they were logged)."""
    start, end = change.suspects(window_seconds)
    seen_start, seen_end = known.suspects(window_seconds) if known is not None else (None, None)
    rows = await conn.fetch(
        "SELECT id FROM incidents WHERE tenant_id = $1 AND ci_id = $2"
        " AND created_at >= $3 AND created_at <= $4"
        " AND ($5::timestamptz IS NULL OR created_at < $5 OR created_at > $6)"
        " AND state NOT IN ('closed', 'cancelled') ORDER BY created_at, id",
        tenant_id,
        change.ci_id,
        start,
        end,
        seen_start,
        seen_end,
    )
    return [r["id"] for r in rows]
