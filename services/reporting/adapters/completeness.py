"""The completeness task's tables (migration 0005): its watermark and horizon, the aggregates'
last versions, the gaps, and the references behind the entity timeline.

The task runs in an all-tenants transaction (`itsm.all_tenants`); requests read the gaps and
references of their tenant only. Every write is one statement per table per batch (unnest).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.db import Connection

if TYPE_CHECKING:
    from services.reporting.application.completeness import Gap


@dataclass(frozen=True)
class State:
    """The task's row: how far it has read, and the horizon it may read up to."""

    watermark: int
    horizon: int
    pending_horizon: int
    pending_xids: list[int]


async def claim(conn: Connection) -> State | None:
    """Lock the task's row for this transaction; None when another replica holds it."""
    row = await conn.fetchrow(
        "SELECT watermark, horizon, pending_horizon, pending_xids::text[] AS xids"
        " FROM ledger_completeness FOR UPDATE SKIP LOCKED"
    )
    if row is None:
        return None
    return State(
        row["watermark"], row["horizon"], row["pending_horizon"], [int(x) for x in row["xids"]]
    )


async def advance_horizon(conn: Connection, state: State) -> int:
    """The highest position below which every row is committed or will never be.

    A row's position is taken from a sequence before its transaction commits, so a later
    position may be visible before an earlier one. The sequence's last value, read BEFORE the
    list of transactions in progress, is safe once those transactions have all ended (the
    ledger's writer has a transaction id before it takes a position: the inbox row comes
    first). Each round promotes the previous round's candidate when that holds.
    """
    ended = await conn.fetchval(
        "SELECT coalesce(bool_and(pg_xact_status(x) IS DISTINCT FROM 'in progress'), true)"
        " FROM unnest($1::text[]::xid8[]) AS x",
        [str(x) for x in state.pending_xids],
    )
    if not ended:
        return state.horizon
    # NULL until the sequence gives its first value.
    last = await conn.fetchval(
        "SELECT coalesce(pg_sequence_last_value("
        "pg_get_serial_sequence('ledger', 'position')::regclass), 0)"
    )
    xids = await conn.fetchval(
        "SELECT array_agg(x::text) FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
        " WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned()"
    )
    await conn.execute(
        "UPDATE ledger_completeness SET horizon = $1, pending_horizon = $2,"
        " pending_xids = $3::text[]::xid8[], updated_at = now()",
        state.pending_horizon,
        int(last or 0),
        list(xids or []),
    )
    return state.pending_horizon


async def set_watermark(conn: Connection, watermark: int) -> None:
    """Every row at or below `watermark` is indexed."""
    await conn.execute("UPDATE ledger_completeness SET watermark = $1", watermark)


async def watermark(conn: Connection) -> int:
    """How far the index has read (the timeline shows rows up to here)."""
    value = await conn.fetchval("SELECT watermark FROM ledger_completeness")
    return int(value or 0)


async def rows_after(conn: Connection, after: int, horizon: int, limit: int) -> list[Any]:
    """Ledger rows of every tenant in (after, horizon], in position order."""
    return list(
        await conn.fetch(
            "SELECT position, tenant_id, type, subject, version, message_value,"
            " CASE WHEN message_value IS NULL THEN data END AS data"
            " FROM ledger WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
            after,
            horizon,
            limit,
        )
    )


async def last_versions(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The last version seen of each (tenant, aggregate)."""
    tenants, subjects = _columns(keys)
    rows = await conn.fetch(
        "SELECT v.tenant_id, v.subject, v.last_version FROM ledger_aggregate_versions v"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, subject)"
        " USING (tenant_id, subject)",
        tenants,
        subjects,
    )
    return {(r["tenant_id"], r["subject"]): r["last_version"] for r in rows}


async def open_gaps(conn: Connection, keys: Iterable[tuple[str, str]]) -> list[Gap]:
    """The open gaps of these (tenant, aggregate)s, oldest first."""
    from services.reporting.application.completeness import Gap

    tenants, subjects = _columns(keys)
    rows = await conn.fetch(
        "SELECT g.* FROM ledger_gaps g"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, aggregate)"
        " USING (tenant_id, aggregate) WHERE g.closed_at IS NULL ORDER BY g.gap_id",
        tenants,
        subjects,
    )
    return [
        Gap(
            r["tenant_id"],
            r["aggregate"],
            r["kind"],
            list(r["missing_versions"]),
            list(r["still_missing"]),
            r["last_seen_version"],
            r["seen_version"],
            r["detected_position"],
            gap_id=r["gap_id"],
        )
        for r in rows
    ]


def _columns(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    pairs = sorted(keys)
    return [t for t, _ in pairs], [s for _, s in pairs]


async def save_versions(conn: Connection, versions: Mapping[tuple[str, str], int]) -> None:
    """Store the aggregates' last versions (upsert, in key order: no deadlock between rounds)."""
    if not versions:
        return
    keys = sorted(versions)
    await conn.execute(
        "INSERT INTO ledger_aggregate_versions (tenant_id, subject, last_version)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
        " ON CONFLICT (tenant_id, subject) DO UPDATE SET last_version ="
        " greatest(ledger_aggregate_versions.last_version, excluded.last_version)",
        [t for t, _ in keys],
        [s for _, s in keys],
        [versions[k] for k in keys],
    )


async def save_references(conn: Connection, references: Sequence[tuple[str, str, int]]) -> None:
    """Index which records each row names (a row read twice is indexed once)."""
    if not references:
        return
    await conn.execute(
        "INSERT INTO ledger_references (tenant_id, entity, position)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
        " ON CONFLICT DO NOTHING",
        [t for t, _, _ in references],
        [e for _, e, _ in references],
        [p for _, _, p in references],
    )


async def insert_gap(conn: Connection, gap: Gap) -> int:
    """Store a new gap; its id."""
    gap_id = await conn.fetchval(
        "INSERT INTO ledger_gaps (tenant_id, aggregate, kind, missing_versions, still_missing,"
        " last_seen_version, seen_version, detected_position, closed_position, closed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
        " CASE WHEN $9::bigint IS NULL THEN NULL ELSE now() END) RETURNING gap_id",
        gap.tenant_id,
        gap.aggregate,
        gap.kind,
        gap.missing,
        gap.still_missing,
        gap.last_seen_version,
        gap.seen_version,
        gap.position,
        gap.closed_position,
    )
    return int(gap_id)


async def update_gaps(conn: Connection, gaps: Sequence[Gap]) -> None:
    """Save what late events filled of open gaps (closing those filled entirely)."""
    for gap in gaps:
        await conn.execute(
            "UPDATE ledger_gaps SET still_missing = $2, closed_position = $3,"
            " closed_at = CASE WHEN $3::bigint IS NULL THEN NULL ELSE now() END"
            " WHERE gap_id = $1",
            gap.gap_id,
            gap.still_missing,
            gap.closed_position,
        )


async def open_gap_count(conn: Connection) -> int:
    """Aggregates of every tenant with an open gap."""
    value = await conn.fetchval(
        "SELECT count(DISTINCT (tenant_id, aggregate)) FROM ledger_gaps WHERE closed_at IS NULL"
    )
    return int(value or 0)


async def gaps_page(
    conn: Connection, tenant_id: str, *, state: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """The tenant's gaps after a gap id, oldest first; open, closed or both."""
    rows = await conn.fetch(
        "SELECT gap_id, aggregate, kind, missing_versions, still_missing, last_seen_version,"
        " seen_version, detected_position, detected_at, closed_position, closed_at"
        " FROM ledger_gaps WHERE tenant_id = $1 AND gap_id > $2"
        " AND ($3::text IS NULL OR (closed_at IS NULL) = ($3 = 'open'))"
        " ORDER BY gap_id LIMIT $4",
        tenant_id,
        after,
        state,
        limit,
    )
    return [dict(r) for r in rows]


async def timeline_page(
    conn: Connection, tenant_id: str, entity: str, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """The ledger rows naming `entity` after a position, in ledger order."""
    rows = await conn.fetch(
        "SELECT l.position, l.leaf_index, l.event_id, l.type, l.source, l.subject, l.version,"
        " l.time, l.correlation_id, l.causation_id, l.actor, l.recorded_at, l.message_value,"
        " CASE WHEN l.message_value IS NULL THEN l.data END AS data,"
        " l.subject = $2 AS about_entity"
        " FROM ledger_references r JOIN ledger l ON l.position = r.position"
        " WHERE r.tenant_id = $1 AND r.entity = $2 AND r.position > $3"
        " ORDER BY r.position LIMIT $4",
        tenant_id,
        entity,
        after,
        limit,
    )
    return [dict(r) for r in rows]
