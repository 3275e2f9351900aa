"""Reads of the CMDB graph projection: CIs, business services, the services a CI supports,
a CI's relationships. Plain, tenant-scoped SQL (the `tenant_id` filter and row-level security
both apply)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db import Connection


@dataclass(frozen=True)
class ProjectedCi:
    """A configuration item as the last applied CI event described it."""

    id: str
    ci_class: str
    name: str
    status: str
    owner_team: str | None
    criticality: int
    external_ids: Mapping[str, str]
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class ProjectedService:
    """A business service's catalogue entry (`sla_policy`: the policy covering it, or None)."""

    id: str
    name: str
    status: str
    criticality: int
    owner: str | None
    customer: str | None
    availability_target: float | None
    sla_policy: str | None
    version: int


@dataclass(frozen=True)
class ProjectedRelationship:
    """A relationship in place: `source_id` <type> `target_id`."""

    id: str
    type: str
    source_id: str
    target_id: str


_CI_COLUMNS = (
    "c.id, c.ci_class, c.name, c.status, c.owner_team, c.criticality, c.external_ids,"
    " c.version, c.updated_at"
)
# Several CIs may match a name or (briefly) an external id: prefer one that is not retired,
# then the most recently updated, then the lowest id.
_CI_PREFERENCE = "(c.status = 'retired'), c.updated_at DESC, c.id"

_SERVICE_COLUMNS = (
    "id, name, status, criticality, owner, customer, availability_target, sla_policy, version"
)


def _ci(row: asyncpg.Record | None) -> ProjectedCi | None:
    if row is None:
        return None
    return ProjectedCi(
        id=row["id"],
        ci_class=row["ci_class"],
        name=row["name"],
        status=row["status"],
        owner_team=row["owner_team"],
        criticality=row["criticality"],
        external_ids=dict(row["external_ids"]),
        version=row["version"],
        updated_at=row["updated_at"],
    )


def _service(row: asyncpg.Record | None) -> ProjectedService | None:
    return ProjectedService(**dict(row)) if row is not None else None


async def ci_by_id(conn: Connection, tenant_id: str, ci_id: str) -> ProjectedCi | None:
    """The CI with this id, or None if no event about it has arrived."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS} FROM cmdb_cis c WHERE c.tenant_id = $1 AND c.id = $2",  # noqa: S608 - constant columns
        tenant_id,
        ci_id,
    )
    return _ci(row)


async def ci_by_name(conn: Connection, tenant_id: str, name: str) -> ProjectedCi | None:
    """The CI with this name, compared case-insensitively; an exact-case match first, then one
    that is not retired, then the most recently updated, then the lowest id."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS} FROM cmdb_cis c"  # noqa: S608 - constant columns
        " WHERE c.tenant_id = $1 AND lower(c.name) = lower($2)"
        f" ORDER BY (c.name = $2) DESC, {_CI_PREFERENCE} LIMIT 1",
        tenant_id,
        name,
    )
    return _ci(row)


async def ci_by_external_id(
    conn: Connection, tenant_id: str, source: str, external_id: str
) -> ProjectedCi | None:
    """The CI that carries this external id in this discovery source (exact match)."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS} FROM cmdb_ci_external_ids x"  # noqa: S608 - constant columns
        " JOIN cmdb_cis c ON c.tenant_id = x.tenant_id AND c.id = x.ci_id"
        " WHERE x.tenant_id = $1 AND x.source = $2 AND x.external_id = $3"
        f" ORDER BY {_CI_PREFERENCE} LIMIT 1",
        tenant_id,
        source,
        external_id,
    )
    return _ci(row)


async def service_by_id(
    conn: Connection, tenant_id: str, service_id: str
) -> ProjectedService | None:
    """The business service with this (CI) id, or None."""
    row = await conn.fetchrow(
        f"SELECT {_SERVICE_COLUMNS} FROM cmdb_business_services"  # noqa: S608 - constant columns
        " WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        service_id,
    )
    return _service(row)


async def service_by_name(conn: Connection, tenant_id: str, name: str) -> ProjectedService | None:
    """The business service with this name, compared case-insensitively; an exact-case match
    first, then one that is not retired, then the lowest id."""
    row = await conn.fetchrow(
        f"SELECT {_SERVICE_COLUMNS} FROM cmdb_business_services"  # noqa: S608 - constant columns
        " WHERE tenant_id = $1 AND lower(name) = lower($2)"
        " ORDER BY (name = $2) DESC, (status = 'retired'), id LIMIT 1",
        tenant_id,
        name,
    )
    return _service(row)


async def services_of_ci(conn: Connection, tenant_id: str, ci_id: str) -> list[str]:
    """The business service ids the CI supports (sorted; a business service supports itself);
    empty for a CI that supports none, is retired, or is not known yet."""
    services = await conn.fetchval(
        "SELECT services FROM cmdb_ci_services WHERE tenant_id = $1 AND ci_id = $2",
        tenant_id,
        ci_id,
    )
    return list(services or [])


async def relationships_of(
    conn: Connection, tenant_id: str, ci_id: str
) -> list[ProjectedRelationship]:
    """The relationships in place that the CI is part of (either end), by type and id."""
    rows = await conn.fetch(
        "SELECT id, type, source_id, target_id FROM cmdb_relationships"
        # Either end is the dependent or the dependency: the walks' indexes serve both.
        " WHERE tenant_id = $1 AND (dependent_id = $2 OR dependency_id = $2) AND NOT removed"
        " ORDER BY type, id",
        tenant_id,
        ci_id,
    )
    return [ProjectedRelationship(**dict(r)) for r in rows]
