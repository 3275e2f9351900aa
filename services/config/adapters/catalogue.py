"""Calendars, SLA policies, their versions and business service announcements in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.config.domain.catalogue import BUSINESS_SERVICE, SlaPolicyDefinition, Target
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.db import Connection

# --- calendars ---------------------------------------------------------------------------------

_CALENDAR = "name, description, spec, version, updated_at, updated_by"


async def calendar(
    conn: Connection, tenant_id: str, name: str, *, lock: str | None = None
) -> dict[str, Any] | None:
    """A calendar (`spec` as a CalendarSpec), optionally locked (`lock`: 'UPDATE' or 'SHARE')."""
    suffix = {None: "", "UPDATE": " FOR UPDATE", "SHARE": " FOR SHARE"}[lock]
    row = await conn.fetchrow(
        f"SELECT {_CALENDAR} FROM calendars WHERE tenant_id = $1 AND name = $2"  # noqa: S608 - constant
        + suffix,
        tenant_id,
        name,
    )
    if row is None:
        return None
    return {**dict(row), "spec": CalendarSpec.model_validate(row["spec"])}


async def calendars(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    """Every calendar of the tenant, by name."""
    rows = await conn.fetch(
        f"SELECT {_CALENDAR} FROM calendars WHERE tenant_id = $1 ORDER BY name",  # noqa: S608 - constant
        tenant_id,
    )
    return [{**dict(r), "spec": CalendarSpec.model_validate(r["spec"])} for r in rows]


async def save_calendar(
    conn: Connection,
    tenant_id: str,
    name: str,
    *,
    description: str,
    spec: CalendarSpec,
    actor: str,
    now: datetime,
) -> int:
    """Create or replace a calendar and keep the version; return its new version."""
    definition = {"description": description, "calendar": spec.model_dump(mode="json")}
    version: int = await conn.fetchval(
        "INSERT INTO calendars (tenant_id, name, description, spec, version, updated_at,"
        " updated_by) VALUES ($1, $2, $3, $4, 1, $5, $6)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,"
        " spec = EXCLUDED.spec, version = calendars.version + 1,"
        " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by"
        " RETURNING version",
        tenant_id,
        name,
        description,
        definition["calendar"],
        now,
        actor,
    )
    await conn.execute(
        "INSERT INTO calendar_versions (tenant_id, name, version, defined_at, actor, definition)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        tenant_id,
        name,
        version,
        now,
        actor,
        definition,
    )
    return version


async def calendar_history(
    conn: Connection, tenant_id: str, name: str, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` versions of a calendar after a version number, oldest first."""
    rows = await conn.fetch(
        "SELECT version, defined_at AS at, actor, definition FROM calendar_versions"
        " WHERE tenant_id = $1 AND name = $2 AND version > $3 ORDER BY version LIMIT $4",
        tenant_id,
        name,
        after,
        limit,
    )
    return [dict(r) for r in rows]


# --- SLA policies ------------------------------------------------------------------------------

_POLICY = (
    "name, description, calendar, targets, pause_on, warning_threshold, services, is_default,"
    " version, updated_at, updated_by"
)


def _policy(row: Any) -> dict[str, Any]:
    """A policy row as {name, definition: SlaPolicyDefinition, version, updated_at, updated_by}."""
    definition = SlaPolicyDefinition(
        description=row["description"],
        calendar=row["calendar"],
        targets={p: Target(**t) for p, t in row["targets"].items()},
        pause_on=tuple(row["pause_on"]),
        warning_threshold=row["warning_threshold"],
        services=tuple(row["services"]),
        default=row["is_default"],
    )
    return {
        "name": row["name"],
        "definition": definition,
        "version": row["version"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


async def policy(
    conn: Connection, tenant_id: str, name: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    """A policy (see `_policy`), optionally locked for a redefinition."""
    row = await conn.fetchrow(
        f"SELECT {_POLICY} FROM sla_policies WHERE tenant_id = $1 AND name = $2"  # noqa: S608 - constant
        + (" FOR UPDATE" if for_update else ""),
        tenant_id,
        name,
    )
    return _policy(row) if row else None


async def policies(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    """Every policy of the tenant, by name."""
    rows = await conn.fetch(
        f"SELECT {_POLICY} FROM sla_policies WHERE tenant_id = $1 ORDER BY name",  # noqa: S608 - constant
        tenant_id,
    )
    return [_policy(r) for r in rows]


async def policies_using(conn: Connection, tenant_id: str, calendar: str) -> list[dict[str, Any]]:
    """The policies on a calendar, locked for republishing, by name (one lock order for all)."""
    rows = await conn.fetch(
        f"SELECT {_POLICY} FROM sla_policies WHERE tenant_id = $1 AND calendar = $2"  # noqa: S608 - constant
        " ORDER BY name FOR UPDATE",
        tenant_id,
        calendar,
    )
    return [_policy(r) for r in rows]


async def save_policy(
    conn: Connection,
    tenant_id: str,
    name: str,
    definition: SlaPolicyDefinition,
    *,
    version: int,
    actor: str,
    now: datetime,
) -> None:
    """Store a policy at `version` (1 creates it; the caller holds the row lock otherwise)."""
    stored = definition.as_stored()
    await conn.execute(
        "INSERT INTO sla_policies (tenant_id, name, description, calendar, targets, pause_on,"
        " warning_threshold, services, is_default, version, updated_at, updated_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,"
        " calendar = EXCLUDED.calendar, targets = EXCLUDED.targets,"
        " pause_on = EXCLUDED.pause_on, warning_threshold = EXCLUDED.warning_threshold,"
        " services = EXCLUDED.services, is_default = EXCLUDED.is_default,"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,"
        " updated_by = EXCLUDED.updated_by",
        tenant_id,
        name,
        definition.description,
        definition.calendar,
        stored["targets"],
        list(definition.pause_on),
        definition.warning_threshold,
        list(definition.services),
        definition.default,
        version,
        now,
        actor,
    )


async def bump_policy(
    conn: Connection, tenant_id: str, name: str, *, actor: str, now: datetime
) -> int:
    """A new version of a policy whose definition is unchanged (its calendar changed)."""
    version: int = await conn.fetchval(
        "UPDATE sla_policies SET version = version + 1, updated_at = $3, updated_by = $4"
        " WHERE tenant_id = $1 AND name = $2 RETURNING version",
        tenant_id,
        name,
        now,
        actor,
    )
    return version


async def record_policy_version(
    conn: Connection,
    tenant_id: str,
    name: str,
    definition: SlaPolicyDefinition,
    *,
    version: int,
    cause: str,
    calendar_version: int,
    calendar: CalendarSpec,
    actor: str,
    now: datetime,
) -> None:
    """Keep a policy version with the calendar it used."""
    await conn.execute(
        "INSERT INTO sla_policy_versions (tenant_id, name, version, defined_at, actor, cause,"
        " definition, calendar_version, calendar) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        tenant_id,
        name,
        version,
        now,
        actor,
        cause,
        definition.as_stored(),
        calendar_version,
        calendar.model_dump(mode="json"),
    )


async def policy_history(
    conn: Connection, tenant_id: str, name: str, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` versions of a policy after a version number, oldest first."""
    rows = await conn.fetch(
        "SELECT version, defined_at AS at, actor, cause, definition, calendar_version, calendar"
        " FROM sla_policy_versions WHERE tenant_id = $1 AND name = $2 AND version > $3"
        " ORDER BY version LIMIT $4",
        tenant_id,
        name,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def other_default(conn: Connection, tenant_id: str, name: str) -> str | None:
    """The tenant's default policy when it is not `name`."""
    other: str | None = await conn.fetchval(
        "SELECT name FROM sla_policies WHERE tenant_id = $1 AND is_default AND name <> $2",
        tenant_id,
        name,
    )
    return other


# --- coverage ----------------------------------------------------------------------------------


async def covered_elsewhere(
    conn: Connection, tenant_id: str, name: str, services: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Of `services`, those another policy than `name` covers, with that policy."""
    rows = await conn.fetch(
        "SELECT service_id, policy FROM sla_policy_services"
        " WHERE tenant_id = $1 AND service_id = ANY($2::uuid[]) AND policy <> $3",
        tenant_id,
        services,
        name,
    )
    return {r["service_id"]: r["policy"] for r in rows}


async def set_coverage(
    conn: Connection, tenant_id: str, name: str, services: list[uuid.UUID]
) -> None:
    """Make `name` cover exactly `services` (the caller checked no other policy covers them)."""
    await conn.execute(
        "DELETE FROM sla_policy_services WHERE tenant_id = $1 AND policy = $2"
        " AND NOT (service_id = ANY($3::uuid[]))",
        tenant_id,
        name,
        services,
    )
    await conn.execute(
        "INSERT INTO sla_policy_services (tenant_id, service_id, policy)"
        " SELECT $1, s, $2 FROM unnest($3::uuid[]) AS s ON CONFLICT DO NOTHING",
        tenant_id,
        name,
        services,
    )


async def covering_policy(conn: Connection, tenant_id: str, service_id: uuid.UUID) -> str | None:
    """The policy that covers a business service, if one does."""
    policy_name: str | None = await conn.fetchval(
        "SELECT policy FROM sla_policy_services WHERE tenant_id = $1 AND service_id = $2",
        tenant_id,
        service_id,
    )
    return policy_name


async def next_announcement(conn: Connection, tenant_id: str, service_id: uuid.UUID) -> int:
    """The next sequence of a business service's announcements (its row stays locked)."""
    sequence: int = await conn.fetchval(
        "INSERT INTO business_service_announcements (tenant_id, service_id, sequence)"
        " VALUES ($1, $2, 1) ON CONFLICT (tenant_id, service_id)"
        " DO UPDATE SET sequence = business_service_announcements.sequence + 1"
        " RETURNING sequence",
        tenant_id,
        service_id,
    )
    return sequence


# --- business services -------------------------------------------------------------------------

_CI_COLUMNS = (
    "c.id, c.tenant_id, c.class AS ci_class, c.name, c.status, c.owner_team, c.criticality,"
    " c.attributes, c.external_ids, c.controlled, c.version, c.created_at, c.updated_at,"
    " c.updated_by"
)


def _service(row: Any) -> tuple[ConfigurationItem, str | None]:
    fields = dict(row)
    policy_name = fields.pop("sla_policy", None)
    return ConfigurationItem(**fields), policy_name


async def cis_share_locked(
    conn: Connection, tenant_id: str, ids: list[uuid.UUID]
) -> dict[uuid.UUID, ConfigurationItem]:
    """The CIs among `ids` (any class), share-locked so no modification races an announcement."""
    rows = await conn.fetch(
        f"SELECT {_CI_COLUMNS} FROM cis c WHERE c.tenant_id = $1"  # noqa: S608 - constant
        " AND c.id = ANY($2::uuid[]) ORDER BY c.id FOR SHARE",
        tenant_id,
        ids,
    )
    return {r["id"]: _service(r)[0] for r in rows}


async def business_service(
    conn: Connection, tenant_id: str, service_id: uuid.UUID
) -> tuple[ConfigurationItem, str | None] | None:
    """A business service CI and the policy that covers it, or None."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS}, p.policy AS sla_policy FROM cis c"  # noqa: S608 - constant
        " LEFT JOIN sla_policy_services p ON p.tenant_id = c.tenant_id AND p.service_id = c.id"
        " WHERE c.tenant_id = $1 AND c.id = $2 AND c.class = $3",
        tenant_id,
        service_id,
        BUSINESS_SERVICE,
    )
    return _service(row) if row else None


async def business_services(
    conn: Connection,
    tenant_id: str,
    *,
    after: tuple[str, uuid.UUID] | None,
    include_retired: bool,
    limit: int,
) -> list[tuple[ConfigurationItem, str | None]]:
    """Up to `limit` business services by (name, id) after a position, with their policies."""
    rows = await conn.fetch(
        f"SELECT {_CI_COLUMNS}, p.policy AS sla_policy FROM cis c"  # noqa: S608 - constant
        " LEFT JOIN sla_policy_services p ON p.tenant_id = c.tenant_id AND p.service_id = c.id"
        " WHERE c.tenant_id = $1 AND c.class = $2 AND ($3 OR c.status <> 'retired')"
        " AND ($4::text IS NULL OR (c.name, c.id) > ($4, $5::uuid))"
        " ORDER BY c.name, c.id LIMIT $6",
        tenant_id,
        BUSINESS_SERVICE,
        include_retired,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_service(r) for r in rows]
