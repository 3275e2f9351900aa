"""Baselines, and the CMDB compared between two instants, in PostgreSQL.

Nothing is copied when a baseline is named: the state of a CI at instant T is its version with
the highest number whose valid_from <= T, and a relationship is in place at T when
added_at <= T < removed_at (or never removed). Between two instants only CIs with a version in
between can differ, so a diff looks at those alone (ci_versions_window index).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.db import Connection, stored_instant

_COLUMNS = "name, description, at, cis, relationships, created_at, created_by"

# Fields compared one by one; `attributes` is compared per key.
DIFF_FIELDS = ("name", "status", "owner_team", "criticality", "controlled", "external_ids")


def _alive(state: str) -> str:
    return f"coalesce(({state}->>'status') <> 'retired', false)"


def _tracked(state: str) -> str:
    pairs = ", ".join(f"'{f}', {state}->'{f}'" for f in (*DIFF_FIELDS, "attributes"))
    return f"jsonb_build_object({pairs})"


def _state_at(instant: str) -> str:
    return (
        "SELECT v.state FROM ci_versions v WHERE v.tenant_id = $1 AND v.ci_id = c.ci_id"  # noqa: S608 - constant
        f" AND v.valid_from <= {instant} ORDER BY v.version DESC LIMIT 1"
    )


# $1 tenant, $2 earlier instant, $3 later instant, $4 CI id to start after (or null).
_CI_CHANGES = f"""
WITH candidates AS (
    SELECT DISTINCT ci_id FROM ci_versions
    WHERE tenant_id = $1 AND valid_from > $2 AND valid_from <= $3
      AND ($4::uuid IS NULL OR ci_id > $4::uuid)
), compared AS (
    SELECT c.ci_id, a.state AS before, b.state AS after
    FROM candidates c
    LEFT JOIN LATERAL ({_state_at("$2")}) a ON true
    LEFT JOIN LATERAL ({_state_at("$3")}) b ON true
), classified AS (
    SELECT ci_id, before, after, CASE
        WHEN {_alive("before")} AND NOT {_alive("after")} THEN 'removed'
        WHEN NOT {_alive("before")} AND {_alive("after")} THEN 'added'
        WHEN {_alive("before")} AND {_tracked("before")} <> {_tracked("after")} THEN 'changed'
    END AS change
    FROM compared
)
"""  # noqa: S608 - constant fragments

_FIELD_NAMES = ", ".join(f"'{f}'" for f in DIFF_FIELDS)
# Per field {"from", "to"} of a changed CI; an attribute absent on one side counts as null.
_FIELDS = f"""
(SELECT coalesce(jsonb_object_agg(d.field, jsonb_build_object('from', d.a, 'to', d.b)), '{{}}')
 FROM (
    SELECT f AS field, coalesce(p.before->f, 'null') AS a, coalesce(p.after->f, 'null') AS b
    FROM unnest(ARRAY[{_FIELD_NAMES}]) AS f
    UNION ALL
    SELECT 'attributes.' || k, coalesce(p.before->'attributes'->k, 'null'),
           coalesce(p.after->'attributes'->k, 'null')
    FROM (SELECT jsonb_object_keys(p.before->'attributes')
          UNION SELECT jsonb_object_keys(p.after->'attributes')) AS keys(k)
 ) d WHERE d.a <> d.b)
"""  # noqa: S608 - constant fragments

_CI_PAGE = (
    _CI_CHANGES  # noqa: S608 - constant fragments
    + f"""
SELECT p.ci_id AS id, p.change, p.before, p.after,
       CASE WHEN p.change = 'changed' THEN {_FIELDS} END AS fields
FROM (SELECT * FROM classified WHERE change IS NOT NULL ORDER BY ci_id LIMIT $5) p
ORDER BY p.ci_id
"""  # noqa: S608 - constant fragments
)

_CI_SUMMARY = (
    _CI_CHANGES  # noqa: S608 - constant fragments
    + "SELECT change, count(*) AS n FROM classified WHERE change IS NOT NULL GROUP BY change"
)

# Added: in place at the later instant, not at the earlier. Removed: the other way round.
_RELATIONSHIP_CHANGED = """
tenant_id = $1 AND (
    (added_at > $2 AND added_at <= $3 AND (removed_at IS NULL OR removed_at > $3))
    OR (added_at <= $2 AND removed_at > $2 AND removed_at <= $3))
"""


async def without_jit(conn: Connection) -> None:
    """For the rest of the transaction: no JIT compilation, which costs these queries more
    (hundreds of milliseconds on 100,000 CIs) than it saves."""
    await conn.execute("SET LOCAL jit = off")


async def insert(conn: Connection, tenant_id: str, baseline: dict[str, Any]) -> bool:
    """Store a new baseline; False when the tenant already has one of that name."""
    inserted = await conn.fetchval(
        "INSERT INTO baselines (tenant_id, name, description, at, cis, relationships, created_at,"
        " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        " RETURNING true",
        tenant_id,
        baseline["name"],
        baseline["description"],
        baseline["at"],
        baseline["cis"],
        baseline["relationships"],
        baseline["created_at"],
        baseline["created_by"],
    )
    return bool(inserted)


async def get(conn: Connection, tenant_id: str, name: str) -> dict[str, Any] | None:
    """The tenant's baseline of that name, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM baselines WHERE tenant_id = $1 AND name = $2",  # noqa: S608 - constant
        tenant_id,
        name,
    )
    return _baseline(row) if row else None


async def page(
    conn: Connection, tenant_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` baselines after (at, name), oldest instant first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM baselines WHERE tenant_id = $1"  # noqa: S608 - constant
        " AND ($2::timestamptz IS NULL OR (at, name) > ($2::timestamptz, $3::text))"
        " ORDER BY at, name LIMIT $4",
        tenant_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_baseline(r) for r in rows]


def _baseline(row: Any) -> dict[str, Any]:
    # A baseline stored before instants were range-checked may hold -infinity (asyncpg writes
    # 0001-01-01T00:00:00Z so), which reads back naive: give it its zone so it compares and
    # diffs like any other.
    baseline = dict(row)
    baseline["at"] = stored_instant(baseline["at"])
    return baseline


async def counts_at(conn: Connection, tenant_id: str, at: datetime) -> tuple[int, int]:
    """(CIs not retired, relationships in place) at an instant."""
    cis: int = await conn.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT ON (ci_id) state->>'status' AS status"
        " FROM ci_versions WHERE tenant_id = $1 AND valid_from <= $2"
        " ORDER BY ci_id DESC, version DESC) s WHERE status <> 'retired'",
        tenant_id,
        at,
    )
    relationships: int = await conn.fetchval(
        "SELECT count(*) FROM relationships WHERE tenant_id = $1 AND added_at <= $2"
        " AND (removed_at IS NULL OR removed_at > $2)",
        tenant_id,
        at,
    )
    return cis, relationships


async def ci_changes_summary(
    conn: Connection, tenant_id: str, earlier: datetime, later: datetime
) -> dict[str, int]:
    """How many CIs were added, removed and changed between two instants."""
    rows = await conn.fetch(_CI_SUMMARY, tenant_id, earlier, later, None)
    counts = {"added": 0, "removed": 0, "changed": 0}
    counts.update({r["change"]: r["n"] for r in rows})
    return counts


async def ci_changes(
    conn: Connection,
    tenant_id: str,
    earlier: datetime,
    later: datetime,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` CIs added, removed or changed between two instants, by id after `after`."""
    rows = await conn.fetch(_CI_PAGE, tenant_id, earlier, later, after, limit)
    return [dict(r) for r in rows]


async def relationship_changes_summary(
    conn: Connection, tenant_id: str, earlier: datetime, later: datetime
) -> dict[str, int]:
    """How many relationships were added and removed between two instants."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE added_at > $2) AS added,"  # noqa: S608 - constant
        " count(*) FILTER (WHERE added_at <= $2) AS removed"
        f" FROM relationships WHERE {_RELATIONSHIP_CHANGED}",
        tenant_id,
        earlier,
        later,
    )
    assert row is not None  # an aggregate always yields a row
    return {"added": row["added"], "removed": row["removed"]}


async def relationship_changes(
    conn: Connection,
    tenant_id: str,
    earlier: datetime,
    later: datetime,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` relationships added or removed between two instants, by id after `after`."""
    rows = await conn.fetch(
        "SELECT id, type, source_id, target_id,"  # noqa: S608 - constant
        " CASE WHEN added_at > $2 THEN 'added' ELSE 'removed' END AS change,"
        " CASE WHEN added_at > $2 THEN added_at ELSE removed_at END AS at,"
        " CASE WHEN added_at > $2 THEN added_by ELSE removed_by END AS by"
        f" FROM relationships WHERE {_RELATIONSHIP_CHANGED}"
        " AND ($4::uuid IS NULL OR id > $4::uuid) ORDER BY id LIMIT $5",
        tenant_id,
        earlier,
        later,
        after,
        limit,
    )
    return [dict(r) for r in rows]
