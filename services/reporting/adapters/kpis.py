"""The KPI projection's tables (migration 0007): facts per record and each tenant's progress.

Writes are one statement per batch (unnest). A read of figures is one statement (its facts and
its basis from one snapshot), so a figure never mixes two checkpoints.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.reporting.adapters.checkpoints import NEWEST_CHECKPOINTS
from services.reporting.adapters.evidence import logged_event
from services.reporting.domain.clauses import LoggedEvent
from services.reporting.domain.kpis import Fact, Key
from services.reporting.domain.report_data import Basis
from shared.db import Connection


@dataclass(frozen=True)
class Progress:
    """Where a tenant's facts stand: the checkpoint folded up to, the newest event time."""

    tree_size: int
    root_hash: bytes | None
    as_of: float


@dataclass(frozen=True)
class Snapshot:
    """A tenant's facts for a range, with the basis they stand on."""

    facts: list[Fact]
    progress: Progress | None


async def lock_progress(conn: Connection, tenant_id: str) -> Progress | None:
    """Lock the tenant's progress row for this transaction (made at first); None when another
    replica (or a rebuild) holds it."""
    await conn.execute(
        "INSERT INTO kpi_progress (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant_id
    )
    row = await conn.fetchrow(
        "SELECT tree_size, root_hash, as_of FROM kpi_progress WHERE tenant_id = $1"
        " FOR UPDATE SKIP LOCKED",
        tenant_id,
    )
    return None if row is None else Progress(row["tree_size"], row["root_hash"], row["as_of"])


async def save_progress(conn: Connection, tenant_id: str, progress: Progress) -> None:
    await conn.execute(
        "UPDATE kpi_progress SET tree_size = $2, root_hash = $3, as_of = $4, updated_at = now()"
        " WHERE tenant_id = $1",
        tenant_id,
        progress.tree_size,
        progress.root_hash,
        progress.as_of,
    )


async def reset(conn: Connection, tenant_id: str) -> None:
    """Forget the tenant's facts (a rebuild folds them again in the same transaction)."""
    await conn.execute("DELETE FROM kpi_facts WHERE tenant_id = $1", tenant_id)
    await conn.execute("DELETE FROM kpi_fact_services WHERE tenant_id = $1", tenant_id)
    await save_progress(conn, tenant_id, Progress(0, None, 0.0))


async def behind(conn: Connection) -> list[tuple[str, int]]:
    """Tenants whose newest checkpoint is beyond their folded size, with that size (an
    all-tenants transaction)."""
    rows = await conn.fetch(
        f"{NEWEST_CHECKPOINTS} LEFT JOIN kpi_progress p ON p.tenant_id = h.tenant_id"
        " WHERE c.tree_size > coalesce(p.tree_size, 0) ORDER BY h.tenant_id"
    )
    return [(r["tenant_id"], r["size"]) for r in rows]


async def tenants_with_checkpoints(conn: Connection) -> list[tuple[str, int]]:
    """Every tenant with a signed checkpoint and its newest size (an all-tenants transaction)."""
    rows = await conn.fetch(f"{NEWEST_CHECKPOINTS} ORDER BY h.tenant_id")
    return [(r["tenant_id"], r["size"]) for r in rows]


_EVENT_COLUMNS = (
    "leaf_index, event_id, type, subject, version, time, actor, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"
)


async def events(conn: Connection, tenant_id: str, start: int, end: int) -> list[LoggedEvent]:
    """The tenant's logged events at indexes [start, end), in log order, data as sent."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM ledger"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1 AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index",
        tenant_id,
        start,
        end,
    )
    return [logged_event(row) for row in rows]


async def load(conn: Connection, tenant_id: str, keys: Iterable[Key]) -> dict[Key, Fact]:
    """The stored facts of these keys (missing ones are absent)."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT f.body FROM kpi_facts f"
        " JOIN unnest($2::text[], $3::text[]) AS k(kind, record_id) USING (kind, record_id)"
        " WHERE f.tenant_id = $1",
        tenant_id,
        [k for k, _ in wanted],
        [r for _, r in wanted],
    )
    facts = (Fact.from_json(row["body"]) for row in rows)
    return {fact.key: fact for fact in facts}


async def save(conn: Connection, tenant_id: str, facts: Sequence[Fact]) -> None:
    """Insert or replace these facts."""
    if not facts:
        return
    await conn.execute(
        "INSERT INTO kpi_facts (tenant_id, kind, record_id, first_at, last_at, services, body)"
        " SELECT $1, u.body->>'kind', u.body->>'id', u.first_at, u.last_at,"
        " ARRAY(SELECT jsonb_array_elements_text(coalesce(u.body->'services', '[]'))), u.body"
        " FROM unnest($2::jsonb[], $3::float8[], $4::float8[]) AS u(body, first_at, last_at)"
        " ON CONFLICT (tenant_id, kind, record_id) DO UPDATE SET first_at = excluded.first_at,"
        " last_at = excluded.last_at, services = excluded.services, body = excluded.body",
        tenant_id,
        [fact.to_json() for fact in facts],
        [fact.first_at() for fact in facts],
        [fact.last_at() for fact in facts],
    )
    await conn.execute(
        "DELETE FROM kpi_fact_services s USING unnest($2::text[], $3::text[]) AS k(kind, id)"
        " WHERE s.tenant_id = $1 AND s.kind = k.kind AND s.record_id = k.id",
        tenant_id,
        [fact.kind for fact in facts],
        [fact.id for fact in facts],
    )
    served = [(f.kind, svc, f.id, f.first_at(), f.last_at()) for f in facts for svc in f.services]
    await _insert_services(conn, tenant_id, served)


async def _insert_services(
    conn: Connection, tenant_id: str, rows: Sequence[tuple[str, str, str, float, float]]
) -> None:
    """One row per (fact, service it touches): kind, service, record id, first_at, last_at."""
    if not rows:
        return
    kinds, services, ids, firsts, lasts = (list(column) for column in zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO kpi_fact_services (tenant_id, kind, service, record_id, first_at, last_at)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[],"
        " $6::float8[])",
        tenant_id,
        kinds,
        services,
        ids,
        firsts,
        lasts,
    )


# Facts per statement of a rebuild's inserts (a statement's arrays stay a few megabytes).
INSERT_BATCH = 20_000


async def insert_new(conn: Connection, tenant_id: str, facts: Sequence[Fact]) -> None:
    """Insert facts that are not stored (a rebuild, after `reset` in its transaction): plain
    inserts, a batch per statement, without the lookups of `save`'s upsert and delete."""
    for start in range(0, len(facts), INSERT_BATCH):
        batch = facts[start : start + INSERT_BATCH]
        bounds = [(fact.first_at(), fact.last_at()) for fact in batch]
        await conn.execute(
            "INSERT INTO kpi_facts (tenant_id, kind, record_id, first_at, last_at, services, body)"
            " SELECT $1, u.body->>'kind', u.body->>'id', u.first_at, u.last_at,"
            " ARRAY(SELECT jsonb_array_elements_text(coalesce(u.body->'services', '[]'))), u.body"
            " FROM unnest($2::jsonb[], $3::float8[], $4::float8[]) AS u(body, first_at, last_at)",
            tenant_id,
            [fact.to_json() for fact in batch],
            [first for first, _ in bounds],
            [last for _, last in bounds],
        )
        await _insert_services(
            conn,
            tenant_id,
            [
                (fact.kind, service, fact.id, first, last)
                for fact, (first, last) in zip(batch, bounds, strict=True)
                for service in fact.services
            ],
        )


# For these reads only (this transaction): a plan made for the actual period and services (the
# generic plan of a prepared statement knows neither, and on the benchmark's million incidents
# chose a parallel scan of every fact: 0.9 s instead of 0.3 s), and no JIT (a month of facts is
# costed above `jit_above_cost`; compiling took 50-80 ms, more than it saved).
_NO_JIT = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"


async def plan_for_parameters(conn: Connection) -> None:
    """For the rest of this transaction: every statement planned for its actual parameters,
    without JIT (the fold's loads and deletes join arrays of thousands of keys: a generic plan
    hashed the tenant's whole fact table for each chunk, so a rebuild slowed as it grew)."""
    await conn.execute(_NO_JIT)


async def snapshot(
    conn: Connection,
    tenant_id: str,
    kinds: Sequence[str],
    start: float,
    end: float,
    services: Sequence[str] | None,
) -> Snapshot:
    """The tenant's facts of these kinds placed anywhere in [start, end) (and of these
    services), with the progress they stand on: one statement, one snapshot."""
    await conn.execute(_NO_JIT)
    if services:
        row = await conn.fetchrow(
            # The facts fetched one by one by key (LIMIT 1 keeps the planner from hashing the
            # whole table: it cannot know how few of the service's ranges the period holds).
            "SELECT p.tree_size, p.root_hash, p.as_of, ("
            "  SELECT coalesce(json_agg(f.body), '[]') FROM ("
            "   SELECT DISTINCT s.kind, s.record_id FROM kpi_fact_services s"
            "   WHERE s.tenant_id = $1 AND s.kind = ANY($2::text[]) AND s.service = ANY($5)"
            "   AND s.last_at >= $3 AND s.first_at < $4) k"
            "  CROSS JOIN LATERAL (SELECT body FROM kpi_facts WHERE tenant_id = $1"
            "   AND kind = k.kind AND record_id = k.record_id LIMIT 1) f"
            " ) AS bodies"
            " FROM (SELECT $1::text AS tenant_id) t LEFT JOIN kpi_progress p USING (tenant_id)",
            tenant_id,
            list(kinds),
            start,
            end,
            list(services),
        )
    else:
        row = await conn.fetchrow(
            "SELECT p.tree_size, p.root_hash, p.as_of, ("
            "  SELECT coalesce(json_agg(f.body), '[]') FROM kpi_facts f"
            "  WHERE f.tenant_id = $1 AND f.kind = ANY($2::text[])"
            "  AND f.last_at >= $3 AND f.first_at < $4"
            " ) AS bodies"
            " FROM (SELECT $1::text AS tenant_id) t LEFT JOIN kpi_progress p USING (tenant_id)",
            tenant_id,
            list(kinds),
            start,
            end,
        )
    assert row is not None
    progress = (
        None
        if row["tree_size"] is None
        else Progress(row["tree_size"], row["root_hash"], row["as_of"])
    )
    # One JSON array decoded at once (json_agg): much cheaper than a value per row.
    return Snapshot([Fact.for_reading(body) for body in row["bodies"]], progress)


async def all_facts(
    conn: Connection, kinds: Sequence[str], start: float, end: float
) -> tuple[list[Fact], float]:
    """Every tenant's facts of these kinds placed in [start, end), and the newest `as_of`
    (an all-tenants transaction: the metrics)."""
    await conn.execute(_NO_JIT)
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(max(as_of), 0) FROM kpi_progress) AS as_of, ("
        "  SELECT coalesce(json_agg(f.body), '[]') FROM kpi_facts f"
        "  WHERE f.kind = ANY($1::text[]) AND f.last_at >= $2 AND f.first_at < $3) AS bodies",
        list(kinds),
        start,
        end,
    )
    assert row is not None
    return [Fact.for_reading(body) for body in row["bodies"]], float(row["as_of"])


def basis_of(progress: Progress | None) -> Basis | None:
    """The checkpoint a tenant's figures stand on (None before the first is folded)."""
    if progress is None or progress.tree_size == 0 or progress.root_hash is None:
        return None
    return Basis(progress.tree_size, base64.b64encode(bytes(progress.root_hash)).decode())
