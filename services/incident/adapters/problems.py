"""Problems, their incident links, history and trends in PostgreSQL: plain, parameterised SQL,
always scoped to a tenant (the `tenant_id` filter and row-level security both apply).

The numbered, versioned record itself is the shared repository (`shared/records/sql.py`) over
the `problems` table, its linked incidents read from `problem_incidents`; this module adds the
links, known errors, the problem filter and the trends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.incident.domain.problem import Problem
from shared.db import Connection
from shared.records.sql import Condition, RecordTable

PROBLEMS = RecordTable(
    Problem,
    table="problems",
    history="problem_history",
    key="problem_id",
    kind="problem",
    what="the problem",
    arrays=("change_requests", "incidents"),
    # `incidents` lives in problem_incidents, not in a column.
    computed={
        "incidents": "ARRAY(SELECT l.incident_id FROM problem_incidents l"
        " WHERE l.tenant_id = r.tenant_id AND l.problem_id = r.id"
        " ORDER BY l.linked_at, l.incident_id)"
    },
)
# Problems that no longer explain incidents; an incident linked to one of them is free again.
CLOSED = ("closed", "cancelled")


async def insert(conn: Connection, problem: Problem) -> None:
    """Store a new problem and its links."""
    await PROBLEMS.insert(conn, problem)
    await link(conn, problem, problem.incidents)


async def save(conn: Connection, problem: Problem) -> None:
    """Store a new version of a problem the caller holds locked (links: see `link`)."""
    await PROBLEMS.save(conn, problem)


async def link(conn: Connection, problem: Problem, incidents: tuple[uuid.UUID, ...]) -> None:
    """Record links of the problem to incidents (by the problem's last actor, at its last
    update); a link that exists already is kept as it was."""
    if not incidents:
        return
    await conn.execute(
        "INSERT INTO problem_incidents (tenant_id, problem_id, incident_id, linked_at, linked_by)"
        " SELECT $1, $2, i, $4, $5 FROM unnest($3::uuid[]) AS i ON CONFLICT DO NOTHING",
        problem.tenant_id,
        problem.id,
        list(incidents),
        problem.updated_at,
        problem.updated_by,
    )


async def get(
    conn: Connection, tenant_id: str, problem_id: uuid.UUID, *, lock: bool = False
) -> Problem | None:
    """The tenant's problem with this id, or None (locked for the transaction with `lock`)."""
    return await PROBLEMS.get(conn, tenant_id, problem_id, lock=lock)


async def problem_state(conn: Connection, tenant_id: str, problem_id: uuid.UUID) -> str | None:
    """The state of the tenant's problem, or None when it has none with this id."""
    state = await conn.fetchval(
        "SELECT state FROM problems WHERE tenant_id = $1 AND id = $2", tenant_id, problem_id
    )
    return state if isinstance(state, str) else None


async def record_history(
    conn: Connection, problem: Problem, *, action: str, changes: dict[str, Any]
) -> None:
    """Keep the version: who, when, what changed."""
    await PROBLEMS.record_history(conn, problem, action=action, changes=changes)


async def history(conn: Connection, tenant_id: str, problem_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a problem, oldest first."""
    return await PROBLEMS.history(conn, tenant_id, problem_id)


@dataclass(frozen=True)
class ProblemFilter:
    """What a list asks for; empty or None means any."""

    states: tuple[str, ...] = ()
    ci_id: uuid.UUID | None = None
    service: str | None = None
    origin: str | None = None


async def search(
    conn: Connection,
    tenant_id: str,
    where: ProblemFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Problem]:
    """Problems matching the filter, newest first, after a (created_at, id) position."""
    conditions = [
        Condition("(cardinality({p}::text[]) = 0 OR r.state = ANY({p}))", list(where.states)),
        Condition("({p}::uuid IS NULL OR r.ci_id = {p})", where.ci_id),
        Condition("({p}::text IS NULL OR r.service = {p})", where.service),
        Condition("({p}::text IS NULL OR r.origin = {p})", where.origin),
    ]
    return await PROBLEMS.search(conn, tenant_id, conditions, after=after, limit=limit)


async def newest_known_error(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID | None, services: tuple[str, ...]
) -> tuple[uuid.UUID, str] | None:
    """(id, workaround) of the newest published known error on the CI, else on one of the
    services; None when there is none."""
    row = None
    if ci_id is not None:
        row = await conn.fetchrow(
            "SELECT id, workaround FROM problems"
            " WHERE tenant_id = $1 AND state = 'known_error' AND ci_id = $2"
            " ORDER BY known_error_published_at DESC, id LIMIT 1",
            tenant_id,
            ci_id,
        )
    if row is None and services:
        row = await conn.fetchrow(
            "SELECT id, workaround FROM problems"
            " WHERE tenant_id = $1 AND state = 'known_error' AND service = ANY($2::text[])"
            " ORDER BY known_error_published_at DESC, id LIMIT 1",
            tenant_id,
            list(services),
        )
    return (row["id"], row["workaround"]) if row else None


# --- Trends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendState:
    """The last suggestion of a trend key, and the state of the problem it opened (if any)."""

    suggestions: int
    suggested_at: datetime
    problem_state: str | None


async def lock_trends(conn: Connection, tenant_id: str, keys: list[tuple[str, str]]) -> None:
    """Serialise, until the transaction ends, the trend checks of concurrent incidents on the
    same keys, so that each counts the incidents the other committed (taken in key order)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('problem-trend:' || $1 || ':' || b"
        " || ':' || k, 0))"
        " FROM (SELECT b, k FROM unnest($2::text[], $3::text[]) AS t(b, k) ORDER BY b, k) s",
        tenant_id,
        [b for b, _ in keys],
        [k for _, k in keys],
    )


async def trend_states(
    conn: Connection, tenant_id: str, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], TrendState]:
    """The last suggestion of each of these (basis, key) that had one."""
    rows = await conn.fetch(
        "SELECT t.basis, t.key, t.suggestions, t.suggested_at, p.state AS problem_state"
        " FROM problem_trends t"
        " LEFT JOIN problems p ON p.tenant_id = t.tenant_id AND p.id = t.problem_id"
        " WHERE t.tenant_id = $1"
        " AND (t.basis, t.key) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
        tenant_id,
        [b for b, _ in keys],
        [k for _, k in keys],
    )
    return {
        (r["basis"], r["key"]): TrendState(r["suggestions"], r["suggested_at"], r["problem_state"])
        for r in rows
    }


# Incidents that count towards a trend: not cancelled (logged in error), and not already
# explained by an open problem, whether linked to it or given its known error's workaround.
_UNEXPLAINED = (
    " AND i.state <> 'cancelled'"
    " AND NOT EXISTS (SELECT 1 FROM problems p WHERE p.tenant_id = i.tenant_id"
    " AND p.id IN (i.problem_id, i.known_error_id) AND p.state NOT IN ('closed', 'cancelled'))"
)


async def recent_on_ci(
    conn: Connection,
    tenant_id: str,
    ci_id: uuid.UUID,
    *,
    since: datetime,
    limit: int,
) -> list[uuid.UUID]:
    """Unexplained incidents on the CI created after `since`, oldest first, at most `limit` (the
    newest ones): the incidents_ci index, read newest first until `limit` are found.

    No upper bound: an incident committed just before this one may carry a later time."""
    rows = await conn.fetch(
        "SELECT id FROM (SELECT i.id, i.created_at FROM incidents i"  # noqa: S608 - constant text
        " WHERE i.tenant_id = $1 AND i.ci_id = $2 AND i.created_at > $3"
        f"{_UNEXPLAINED} ORDER BY i.created_at DESC, i.id DESC LIMIT $4) r"
        " ORDER BY created_at, id",
        tenant_id,
        ci_id,
        since,
        limit,
    )
    return [r["id"] for r in rows]


async def recent_on_service(
    conn: Connection,
    tenant_id: str,
    service: str,
    *,
    since: datetime,
    limit: int,
) -> list[uuid.UUID]:
    """Unexplained incidents affecting the service created after `since`, oldest first, at
    most `limit` (the newest ones). Incidents on a CI whose own trend stands (suggested since
    `since`, or its problem open) are that CI's trend, not the service's."""
    rows = await conn.fetch(
        "SELECT id FROM (SELECT i.id, i.created_at FROM incidents i"  # noqa: S608 - constant text
        " WHERE i.tenant_id = $1 AND i.services @> ARRAY[$2::text]"
        " AND i.created_at > $3"
        f"{_UNEXPLAINED}"
        " AND NOT EXISTS (SELECT 1 FROM problem_trends t"
        " LEFT JOIN problems p ON p.tenant_id = t.tenant_id AND p.id = t.problem_id"
        " WHERE t.tenant_id = i.tenant_id AND t.basis = 'ci' AND t.key = i.ci_id::text"
        " AND (t.suggested_at > $3 OR p.state NOT IN ('closed', 'cancelled')))"
        " ORDER BY i.created_at DESC, i.id DESC LIMIT $4) r"
        " ORDER BY created_at, id",
        tenant_id,
        service,
        since,
        limit,
    )
    return [r["id"] for r in rows]


async def mark_suggested(
    conn: Connection,
    tenant_id: str,
    basis: str,
    key: str,
    *,
    at: datetime,
    window_start: datetime,
    incidents: list[uuid.UUID],
) -> int | None:
    """Record a suggestion for the key unless one is still standing (younger than the window,
    or its problem still open); return its number (the event's sequence), or None.

    Concurrent callers wait on the row and re-check it once the first commits: at most one wins.
    """
    number = await conn.fetchval(
        "INSERT INTO problem_trends AS t (tenant_id, basis, key, suggestions, suggested_at,"
        " window_start, incidents) VALUES ($1, $2, $3, 1, $4, $5, $6)"
        " ON CONFLICT (tenant_id, basis, key) DO UPDATE SET suggestions = t.suggestions + 1,"
        " suggested_at = EXCLUDED.suggested_at, window_start = EXCLUDED.window_start,"
        " incidents = EXCLUDED.incidents, problem_id = NULL"
        " WHERE t.suggested_at <= EXCLUDED.window_start AND NOT EXISTS (SELECT 1 FROM problems p"
        " WHERE p.tenant_id = t.tenant_id AND p.id = t.problem_id"
        " AND p.state NOT IN ('closed', 'cancelled'))"
        " RETURNING suggestions",
        tenant_id,
        basis,
        key,
        at,
        window_start,
        incidents,
    )
    return number if isinstance(number, int) else None


async def set_trend_problem(
    conn: Connection, tenant_id: str, basis: str, key: str, problem_id: uuid.UUID
) -> None:
    """Remember the problem a trend opened (the key stays quiet while it is open)."""
    await conn.execute(
        "UPDATE problem_trends SET problem_id = $4"
        " WHERE tenant_id = $1 AND basis = $2 AND key = $3",
        tenant_id,
        basis,
        key,
        problem_id,
    )
