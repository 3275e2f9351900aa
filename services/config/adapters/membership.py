"""Service membership: which business services each CI supports, computed in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from shared.db import Connection

# For the seeds and everything they depend on (the CIs whose set a change at the seeds can
# alter), the business services that depend on each, walking up through CIs that are not
# retired. UNION (not UNION ALL) keeps each (origin, ci) pair once, so cycles end the walk.
_SUPPORTED = """
WITH RECURSIVE affected(ci) AS (
    SELECT unnest($2::uuid[])
    UNION
    SELECT r.dependency_id
    FROM affected a
    JOIN relationships r
      ON r.tenant_id = $1 AND r.dependent_id = a.ci AND r.removed_at IS NULL
),
live(origin) AS (
    SELECT a.ci FROM affected a
    JOIN cis c ON c.tenant_id = $1 AND c.id = a.ci AND c.status <> 'retired'
),
up(origin, ci) AS (
    SELECT origin, origin FROM live
    UNION
    SELECT u.origin, r.dependent_id
    FROM up u
    JOIN relationships r
      ON r.tenant_id = $1 AND r.dependency_id = u.ci AND r.removed_at IS NULL
    JOIN cis c ON c.tenant_id = $1 AND c.id = r.dependent_id AND c.status <> 'retired'
)
SELECT a.ci,
       coalesce(array_agg(DISTINCT u.ci ORDER BY u.ci)
                FILTER (WHERE c.class = 'business_service'), '{}')::text[] AS services,
       m.services::text[] AS previous,
       m.sequence
FROM affected a
LEFT JOIN up u ON u.origin = a.ci
LEFT JOIN cis c ON c.tenant_id = $1 AND c.id = u.ci
LEFT JOIN ci_service_membership m ON m.tenant_id = $1 AND m.ci_id = a.ci
GROUP BY a.ci, m.services, m.sequence
"""


# Every CI's set at once: walk down from every live business service. Only the CIs whose set
# differs from the recorded one come back (a CI that lost every service, too). Sets come back
# as text (sorted as UUIDs): they are only passed on, in events and in `record`, and after a
# large import they hold hundreds of thousands of service ids (630,000 for 300,000 relationships).
_ALL = """
WITH RECURSIVE down(service, ci) AS (
    SELECT id, id FROM cis
    WHERE tenant_id = $1 AND class = 'business_service' AND status <> 'retired'
    UNION
    SELECT d.service, r.dependency_id
    FROM down d
    JOIN relationships r
      ON r.tenant_id = $1 AND r.dependent_id = d.ci AND r.removed_at IS NULL
    JOIN cis c ON c.tenant_id = $1 AND c.id = r.dependency_id AND c.status <> 'retired'
),
fresh AS (
    SELECT ci, array_agg(service ORDER BY service) AS services FROM down GROUP BY ci
),
recorded AS (
    SELECT ci_id, services, sequence FROM ci_service_membership WHERE tenant_id = $1
)
SELECT coalesce(f.ci, m.ci_id) AS ci,
       coalesce(f.services, '{}')::text[] AS services,
       m.services::text[] AS previous,
       m.sequence
FROM fresh f
FULL JOIN recorded m ON m.ci_id = f.ci
WHERE coalesce(f.services, '{}') IS DISTINCT FROM coalesce(m.services, '{}')
"""


# (ci, services now, services recorded, recorded sequence); service ids as text.
Supported = tuple[uuid.UUID, list[str], list[str], int]


# Memory for the walk's sorts and hash tables (the caller's transaction only): with the
# server's default (4MB) the walk over 300,000 relationships, some 630,000 (service, CI)
# pairs, spills to temporary files and takes twice as long (6.3 s instead of 3.3 s).
WALK_WORK_MEM = "64MB"


async def supported_everywhere(conn: Connection, tenant_id: str) -> list[Supported]:
    """Like `supported`, for every CI of the tenant, but only those whose set changed.

    Runs in the caller's transaction, with WALK_WORK_MEM for it."""
    await conn.execute(f"SET LOCAL work_mem = '{WALK_WORK_MEM}'")
    rows = await conn.fetch(_ALL, tenant_id)
    return [(r[0], r[1], r[2] or [], r[3] or 0) for r in rows]


async def mark_pending(conn: Connection, tenant_id: str, ci_ids: Sequence[uuid.UUID]) -> None:
    """Remember CIs whose membership a later `settle` must recompute."""
    if ci_ids:
        await conn.execute(
            "INSERT INTO membership_pending (tenant_id, ci_id) SELECT $1, unnest($2::uuid[])"
            " ON CONFLICT DO NOTHING",
            tenant_id,
            list(ci_ids),
        )


async def take_pending(conn: Connection, tenant_id: str) -> list[uuid.UUID]:
    """Remove and return the tenant's marks (the caller recomputes them in this transaction)."""
    rows = await conn.fetch(
        "DELETE FROM membership_pending WHERE tenant_id = $1 RETURNING ci_id", tenant_id
    )
    return [r["ci_id"] for r in rows]


async def tenants_pending(conn: Connection) -> list[str]:
    """Tenants with marks (needs an all-tenants transaction)."""
    rows = await conn.fetch("SELECT DISTINCT tenant_id FROM membership_pending")
    return [r["tenant_id"] for r in rows]


async def lock_tenant(conn: Connection, tenant_id: str) -> None:
    """Serialise membership recomputations of one tenant (until the commit)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"membership/{tenant_id}"
    )


async def supported(
    conn: Connection, tenant_id: str, seeds: Sequence[uuid.UUID]
) -> list[Supported]:
    """(ci, services now, services recorded, recorded sequence) for every CI the seeds reach."""
    rows = await conn.fetch(_SUPPORTED, tenant_id, list(seeds))
    return [(r[0], r[1], r[2] or [], r[3] or 0) for r in rows]


async def record(
    conn: Connection,
    tenant_id: str,
    changes: Sequence[tuple[uuid.UUID, list[str], int]],
    now: datetime,
) -> None:
    """Store (ci, services, sequence) for CIs whose set changed (one statement)."""
    if not changes:
        return
    await conn.execute(
        "INSERT INTO ci_service_membership (tenant_id, ci_id, services, sequence, updated_at)"
        " SELECT $1, c.ci_id, c.services::uuid[], c.sequence, $5"
        " FROM unnest($2::uuid[], $3::text[], $4::int[]) AS c(ci_id, services, sequence)"
        " ON CONFLICT (tenant_id, ci_id) DO UPDATE SET"
        " services = EXCLUDED.services, sequence = EXCLUDED.sequence,"
        " updated_at = EXCLUDED.updated_at",
        tenant_id,
        [ci for ci, _, _ in changes],
        # Each set as an array literal: a list of lists would be one two-dimensional array,
        # which must be rectangular. UUIDs need no quoting inside one.
        ["{" + ",".join(services) + "}" for _, services, _ in changes],
        [sequence for _, _, sequence in changes],
        now,
    )


async def of_ci(conn: Connection, tenant_id: str, ci_id: uuid.UUID) -> list[uuid.UUID]:
    """The business services a CI supports, as last computed."""
    services: list[uuid.UUID] | None = await conn.fetchval(
        "SELECT services FROM ci_service_membership WHERE tenant_id = $1 AND ci_id = $2",
        tenant_id,
        ci_id,
    )
    return list(services or [])
