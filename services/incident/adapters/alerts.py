"""Alert groups in PostgreSQL (migration 0006): the lock, the current incident and the counters.

A group is named by (tenant, source, dedup key). `claim` takes the group's row lock for the
rest of the transaction, creating the row when the group is new, so that the notifications of
one group apply one after the other whatever connection or replica receives them; rows of
different groups are different locks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db import Connection

_COLUMNS = (
    "tenant_id, source, dedup_key, incident_id, incidents_opened, notifications, alerts,"
    " deduplicated, first_received_at, last_received_at, last_action, last_outcome"
)
# A claimed row disappears only if the transaction that created it forgot it again (a follow-up
# for an unknown group): the next attempt then creates it. More than a few means a bug.
_CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class AlertGroup:
    """One alert group of a tenant and what it has received."""

    tenant_id: str
    source: str
    dedup_key: str
    incident_id: uuid.UUID | None
    incidents_opened: int
    notifications: int
    alerts: int
    deduplicated: int
    first_received_at: datetime
    last_received_at: datetime
    last_action: str | None
    last_outcome: str | None


@dataclass(frozen=True)
class Claimed:
    """A group locked for the transaction; `created`: this transaction created its row."""

    group: AlertGroup
    created: bool


def _group(row: asyncpg.Record) -> AlertGroup:
    return AlertGroup(**dict(row))


async def claim(
    conn: Connection, tenant_id: str, source: str, dedup_key: str, *, at: datetime
) -> Claimed:
    """Lock the group's row until the transaction ends, creating it (without incident) when new.

    A concurrent transaction creating the same group makes this wait until it ends, then see its
    row: never two rows, never two incidents.
    """
    for _ in range(_CLAIM_ATTEMPTS):
        created = await conn.fetchval(
            "INSERT INTO alert_groups (tenant_id, source, dedup_key, first_received_at,"
            " last_received_at) VALUES ($1, $2, $3, $4, $4)"
            " ON CONFLICT (tenant_id, source, dedup_key) DO NOTHING RETURNING true",
            tenant_id,
            source,
            dedup_key,
            at,
        )
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM alert_groups"  # noqa: S608 - constant columns
            " WHERE tenant_id = $1 AND source = $2 AND dedup_key = $3 FOR UPDATE",
            tenant_id,
            source,
            dedup_key,
        )
        if row is not None:
            return Claimed(_group(row), created=bool(created))
    raise RuntimeError(f"alert group {source}/{dedup_key} could not be claimed")


async def forget(conn: Connection, tenant_id: str, source: str, dedup_key: str) -> None:
    """Drop a group this transaction created after all (nothing to apply to it)."""
    await conn.execute(
        "DELETE FROM alert_groups WHERE tenant_id = $1 AND source = $2 AND dedup_key = $3"
        " AND incident_id IS NULL",
        tenant_id,
        source,
        dedup_key,
    )


async def record(
    conn: Connection,
    group: AlertGroup,
    *,
    incident_id: uuid.UUID,
    opened: bool,
    alerts: int,
    deduplicated: int,
    action: str,
    outcome: str,
    at: datetime,
) -> None:
    """Count a notification applied to the claimed group and point it at its incident."""
    await conn.execute(
        "UPDATE alert_groups SET incident_id = $4,"
        " incidents_opened = incidents_opened + $5, notifications = notifications + 1,"
        " alerts = alerts + $6, deduplicated = deduplicated + $7,"
        " last_received_at = greatest(last_received_at, $8), last_action = $9, last_outcome = $10"
        " WHERE tenant_id = $1 AND source = $2 AND dedup_key = $3",
        group.tenant_id,
        group.source,
        group.dedup_key,
        incident_id,
        1 if opened else 0,
        alerts,
        deduplicated,
        at,
        action,
        outcome,
    )
