"""Listing and searching a tenant's configuration items, one page at a time, in id order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.db import Connection

_COLUMNS = (
    "id, class AS ci_class, name, status, owner_team, criticality, attributes, external_ids,"
    " controlled, version, updated_at, updated_by"
)


@dataclass(frozen=True)
class CiFilter:
    """What GET /cis narrows the list by; every field left empty matches everything."""

    ci_class: str | None = None
    statuses: list[str] = field(default_factory=list)
    owner_team: str | None = None
    criticality: int | None = None
    name_prefix: str | None = None
    name_contains: str | None = None
    external_id: tuple[str, str] | None = None  # (source, id)


def _where(tenant_id: str, where: CiFilter, after: uuid.UUID | None) -> tuple[str, list[Any]]:
    """The WHERE clause and its arguments: constant fragments, values only as parameters."""
    args: list[Any] = [tenant_id]
    clauses = ["tenant_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.ci_class is not None:
        clauses.append(f"class = {arg(where.ci_class)}")
    if where.statuses:
        clauses.append(f"status = ANY({arg(sorted(set(where.statuses)))}::text[])")
    if where.owner_team is not None:
        clauses.append(f"owner_team = {arg(where.owner_team)}")
    if where.criticality is not None:
        clauses.append(f"criticality = {arg(where.criticality)}::smallint")
    if where.name_prefix:
        # [p, p with its last character incremented) in code point order holds exactly the
        # names starting with p: a range the btree index serves. starts_with() keeps the
        # answer exact at the edges of Unicode.
        p = arg(where.name_prefix)
        clauses.append(
            f'name_folded COLLATE "C" >= lower({p}) COLLATE "C"'
            f' AND name_folded COLLATE "C" < (left(lower({p}), -1)'
            f" || chr(CASE ascii(right(lower({p}), 1)) WHEN 55295 THEN 57344"  # skip surrogates
            f' ELSE least(ascii(right(lower({p}), 1)) + 1, 1114111) END)) COLLATE "C"'
            f" AND starts_with(name_folded, lower({p}))"
        )
    if where.name_contains:
        clauses.append(f"strpos(name_folded, lower({arg(where.name_contains)})) > 0")
    if where.external_id is not None:
        source, external = where.external_id
        clauses.append(
            "id IN (SELECT ci_id FROM ci_external_ids WHERE tenant_id = $1"  # noqa: S608 - parameters only
            f" AND source = {arg(source)} AND external_id = {arg(external)})"
        )
    if after is not None:
        clauses.append(f"id > {arg(after)}")
    return " AND ".join(clauses), args


async def page(
    conn: Connection,
    tenant_id: str,
    where: CiFilter,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` of the tenant's CIs matching the filter, with ids after `after`, by id."""
    clause, args = _where(tenant_id, where, after)
    args.append(limit)
    # Ids first, then the rows: the ids of a substring search come from an index-only scan
    # (cis_names), far cheaper than reading every row of the tenant to look at its name.
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM cis WHERE tenant_id = $1 AND id IN ("  # noqa: S608 - constant fragments, values are parameters
        f"SELECT id FROM cis WHERE {clause} ORDER BY id LIMIT ${len(args)}) ORDER BY id",
        *args,
    )
    return [dict(r) for r in rows]
