"""Impact walks over the CMDB graph projection: from a CI upstream (to what depends on it, up
to the business services) or downstream (to what it depends on), to a depth.

One recursive query in PostgreSQL. A CI already on a path is not visited again (cycle-safe),
the depth is capped at MAX_DEPTH, and the recursion stops once `max_paths` paths were found
(`truncated` then says so): the number of paths can grow exponentially with the depth on a
dense graph, the number of CIs cannot. PostgreSQL walks breadth first, so every CI reached
has its shortest depth even in a truncated walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.db import Connection

Direction = Literal["upstream", "downstream"]
MAX_DEPTH = 10
MAX_PATHS = 10_000

_WALK = """
WITH RECURSIVE walk(ci, depth, path, via) AS (
    SELECT $2::text, 0, ARRAY[$2::text], NULL::text
    UNION ALL
    SELECT r.{next}, w.depth + 1, w.path || r.{next}, r.type
    FROM walk w
    JOIN cmdb_relationships r
      ON r.tenant_id = $1 AND r.{this} = w.ci AND NOT r.removed
    WHERE w.depth < $3 AND NOT r.{next} = ANY(w.path)
), found AS (
    SELECT ci, depth, path, via FROM walk WHERE depth > 0 LIMIT $4 + 1
), shortest AS (
    SELECT DISTINCT ON (ci) ci, depth, path, via
    FROM (SELECT * FROM found LIMIT $4) shown
    ORDER BY ci, depth, path
)
SELECT s.ci, s.depth, s.path, s.via, c.ci_class, c.name, c.status, c.criticality,
       (SELECT count(*) FROM found) > $4 AS truncated
FROM shortest s
LEFT JOIN cmdb_cis c ON c.tenant_id = $1 AND c.id = s.ci
ORDER BY s.depth, c.criticality NULLS LAST, c.name NULLS LAST, s.ci
"""
_QUERIES: dict[Direction, str] = {
    "upstream": _WALK.format(this="dependency_id", next="dependent_id"),
    "downstream": _WALK.format(this="dependent_id", next="dependency_id"),
}


@dataclass(frozen=True)
class ImpactedCi:
    """A CI a walk reached: its shortest depth and one shortest path from the origin.

    `path` runs from the origin to this CI (both included); `via` is the type of the
    relationship of its last step. Class, name, status and criticality are None while the
    CI's own event has not arrived.
    """

    id: str
    depth: int
    path: tuple[str, ...]
    via: str
    ci_class: str | None
    name: str | None
    status: str | None
    criticality: int | None


@dataclass(frozen=True)
class Impact:
    """What a walk reached, by depth then criticality, name and id."""

    items: tuple[ImpactedCi, ...]
    truncated: bool

    def business_services(self) -> tuple[ImpactedCi, ...]:
        """The business services among the CIs reached."""
        return tuple(i for i in self.items if i.ci_class == "business_service")


async def walk(
    conn: Connection,
    tenant_id: str,
    ci_id: str,
    *,
    direction: Direction,
    depth: int,
    max_paths: int = MAX_PATHS,
) -> Impact:
    """Walk the tenant's graph from a CI, `direction` to `depth` relationships away (1 to
    MAX_DEPTH); the origin itself is not among the items."""
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be 1 to {MAX_DEPTH}, got {depth}")
    if max_paths < 1:
        raise ValueError(f"max_paths must be at least 1, got {max_paths}")
    rows = await conn.fetch(_QUERIES[direction], tenant_id, ci_id, depth, max_paths)
    items = tuple(
        ImpactedCi(
            id=r["ci"],
            depth=r["depth"],
            path=tuple(r["path"]),
            via=r["via"],
            ci_class=r["ci_class"],
            name=r["name"],
            status=r["status"],
            criticality=r["criticality"],
        )
        for r in rows
    )
    return Impact(items, truncated=bool(rows) and rows[0]["truncated"])
