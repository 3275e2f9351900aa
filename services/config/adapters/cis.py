"""Configuration items, their versions, external ids and tenant classes in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.config.domain.ci import ConfigurationItem
from shared.db import Connection

COLUMNS = (
    "id, tenant_id, class AS ci_class, name, status, owner_team, criticality, attributes,"
    " external_ids, controlled, version, created_at, updated_at, updated_by"
)


def to_ci(row: Any) -> ConfigurationItem:
    return ConfigurationItem(**dict(row))


async def insert(conn: Connection, ci: ConfigurationItem) -> None:
    """Store a new CI."""
    await conn.execute(
        "INSERT INTO cis (id, tenant_id, class, name, status, owner_team, criticality,"
        " attributes, external_ids, controlled, version, created_at, updated_at, updated_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        ci.id,
        ci.tenant_id,
        ci.ci_class,
        ci.name,
        ci.status,
        ci.owner_team,
        ci.criticality,
        ci.attributes,
        ci.external_ids,
        ci.controlled,
        ci.version,
        ci.created_at,
        ci.updated_at,
        ci.updated_by,
    )


async def update(conn: Connection, ci: ConfigurationItem) -> None:
    """Store a CI's new version (the caller holds its row lock)."""
    await conn.execute(
        "UPDATE cis SET name = $3, status = $4, owner_team = $5, criticality = $6,"
        " attributes = $7, external_ids = $8, controlled = $9, version = $10, updated_at = $11,"
        " updated_by = $12 WHERE tenant_id = $1 AND id = $2",
        ci.tenant_id,
        ci.id,
        ci.name,
        ci.status,
        ci.owner_team,
        ci.criticality,
        ci.attributes,
        ci.external_ids,
        ci.controlled,
        ci.version,
        ci.updated_at,
        ci.updated_by,
    )


async def get(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID, *, for_update: bool = False
) -> ConfigurationItem | None:
    """The tenant's CI, optionally locked for a modification."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM cis WHERE tenant_id = $1 AND id = $2"  # noqa: S608 - constant
        + (" FOR UPDATE" if for_update else ""),
        tenant_id,
        ci_id,
    )
    return to_ci(row) if row else None


async def record_version(
    conn: Connection,
    ci: ConfigurationItem,
    *,
    changed: list[str],
    reason: str | None,
    change_ref: str | None,
    source: str | None,
    change_id: uuid.UUID | None = None,
) -> None:
    """Keep the CI's version in the history (state as of its updated_at), with the change that
    authorised it."""
    await conn.execute(
        "INSERT INTO ci_versions (tenant_id, ci_id, version, valid_from, state, changed, actor,"
        " reason, change_ref, source, change_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ci.tenant_id,
        ci.id,
        ci.version,
        ci.updated_at,
        ci.state().model_dump(mode="json"),
        changed,
        ci.updated_by,
        reason,
        change_ref,
        source,
        change_id,
    )


async def state_as_of(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID, as_of: datetime
) -> dict[str, Any] | None:
    """The CI's state as it was at an instant, or None if it did not exist yet."""
    state: dict[str, Any] | None = await conn.fetchval(
        "SELECT state FROM ci_versions WHERE tenant_id = $1 AND ci_id = $2 AND valid_from <= $3"
        " ORDER BY version DESC LIMIT 1",
        tenant_id,
        ci_id,
        as_of,
    )
    return state


async def history(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` versions after a version number, oldest first."""
    rows = await conn.fetch(
        "SELECT version, valid_from AS at, actor, changed, reason, change_ref, change_id, source,"
        " state"
        " FROM ci_versions WHERE tenant_id = $1 AND ci_id = $2 AND version > $3"
        " ORDER BY version LIMIT $4",
        tenant_id,
        ci_id,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def claim_external_ids(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID, external_ids: dict[str, str]
) -> list[str]:
    """Point the CI's external ids at it; return the sources whose id another CI already has."""
    await conn.execute(
        "DELETE FROM ci_external_ids WHERE tenant_id = $1 AND ci_id = $2", tenant_id, ci_id
    )
    if not external_ids:
        return []
    sources = sorted(external_ids)
    rows = await conn.fetch(
        "INSERT INTO ci_external_ids (tenant_id, source, external_id, ci_id)"
        " SELECT $1, s, e, $2 FROM unnest($3::text[], $4::text[]) AS x(s, e)"
        " ON CONFLICT DO NOTHING RETURNING source",
        tenant_id,
        ci_id,
        sources,
        [external_ids[s] for s in sources],
    )
    return sorted(set(sources) - {r["source"] for r in rows})


async def tenant_class(conn: Connection, tenant_id: str, name: str) -> dict[str, Any] | None:
    """A tenant-defined CI class, or None."""
    row = await conn.fetchrow(
        "SELECT name, description, attribute_schema, version FROM ci_classes"
        " WHERE tenant_id = $1 AND name = $2",
        tenant_id,
        name,
    )
    return dict(row) if row else None


async def tenant_classes(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    """Every class the tenant defined."""
    rows = await conn.fetch(
        "SELECT name, description, attribute_schema, version FROM ci_classes"
        " WHERE tenant_id = $1 ORDER BY name",
        tenant_id,
    )
    return [dict(r) for r in rows]


async def define_class(
    conn: Connection,
    tenant_id: str,
    name: str,
    *,
    description: str,
    attribute_schema: dict[str, Any],
    actor: str,
    now: datetime,
) -> int:
    """Create or replace a tenant class; return its new version."""
    version: int = await conn.fetchval(
        "INSERT INTO ci_classes (tenant_id, name, description, attribute_schema, version,"
        " defined_at, defined_by) VALUES ($1, $2, $3, $4, 1, $5, $6)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,"
        " attribute_schema = EXCLUDED.attribute_schema, version = ci_classes.version + 1,"
        " defined_at = EXCLUDED.defined_at, defined_by = EXCLUDED.defined_by"
        " RETURNING version",
        tenant_id,
        name,
        description,
        attribute_schema,
        now,
        actor,
    )
    return version
