"""The incident service's projection of the config service: CIs, services, SLA policies.

Rule 1 of the house: the incident service never calls the config service. It keeps what it
needs from `itsm.config.events` (consumer `incident-config-projection`, see
`entrypoints/consumers.py`) in the `proj_*` tables of migration 0003, and reads it here.

Writes are idempotent and tolerate any arrival order: every row keeps the version (CIs,
business services, calendars, SLA policies) or the per-CI sequence (service membership) of the
event that wrote it, and an event whose number is not higher than the row's changes nothing.
Events of one aggregate arrive in order (the aggregate id is the message key), so this only
matters for redeliveries, replays and rebuilds; it is cheap insurance.

Reads are plain, tenant-scoped SQL (the `tenant_id` filter and row-level security both apply).

Which SLA policy applies (`policy_for`):

1. A policy whose `services` lists one of the affected business services. When the affected
   services are covered by several policies (the config service lets a service be covered by
   one policy only, but work can affect several services), the most demanding one applies:
   the tightest P1 resolution target, then the tightest P1 response target, then the name.
2. Otherwise the tenant's default policy. While a move of the default flag from one policy to
   another is still arriving (two events of two aggregates), the most recently defined
   default wins, then the name.
3. Otherwise None: no SLA applies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import asyncpg

from services.incident.domain.sla import PRIORITY_NAMES, PriorityName
from shared.calendars import CalendarSpec
from shared.db import Connection
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CalendarDefinedV1,
    CiStateV1,
    ServiceMembershipChangedV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)

# --- What readers get ---------------------------------------------------------------------


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
class PolicySnapshot:
    """An SLA policy as it applies to a piece of work: targets, calendar, pause rules.

    `targets` maps every priority P1..P5 to its response and resolution targets in business
    seconds (`domain.sla.targets_for` picks one); `calendar` is the spec embedded in the
    policy's event (`shared.calendars.BusinessCalendar(calendar)` counts on it).
    """

    name: str
    version: int
    targets: Mapping[PriorityName, SlaTargetV1]
    calendar_name: str
    calendar: CalendarSpec
    pause_on: tuple[str, ...]
    warning_threshold: float
    default: bool


@dataclass(frozen=True)
class ProjectedCalendar:
    """A business-hours calendar as the config service last defined it."""

    name: str
    description: str
    spec: CalendarSpec
    version: int


# --- Writes (the consumer) ----------------------------------------------------------------

_V = TypeVar("_V")


def _latest(items: Iterable[_V], key: Callable[[_V], str], number: Callable[[_V], int]) -> list[_V]:
    """One item per key, the one with the highest number (first seen on a tie)."""
    chosen: dict[str, _V] = {}
    for item in items:
        k = key(item)
        current = chosen.get(k)
        if current is None or number(item) > number(current):
            chosen[k] = item
    return list(chosen.values())


async def upsert_cis(conn: Connection, tenant_id: str, states: Sequence[CiStateV1]) -> int:
    """Apply CI states (created, updated or retired) of one tenant; return how many rows
    changed. A state whose version is not above the stored one is ignored."""
    latest = _latest(states, key=lambda s: s.id, number=lambda s: s.version)
    if not latest:
        return 0
    rows = await conn.fetch(
        "INSERT INTO proj_cis (tenant_id, id, ci_class, name, status, owner_team, criticality,"
        " external_ids, version, updated_at)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::smallint[], $8::jsonb[], $9::integer[], $10::timestamptz[])"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET ci_class = EXCLUDED.ci_class,"
        " name = EXCLUDED.name, status = EXCLUDED.status, owner_team = EXCLUDED.owner_team,"
        " criticality = EXCLUDED.criticality, external_ids = EXCLUDED.external_ids,"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE proj_cis.version < EXCLUDED.version"
        " RETURNING id",
        tenant_id,
        [s.id for s in latest],
        [s.ci_class for s in latest],
        [s.name for s in latest],
        [s.status for s in latest],
        [s.owner_team for s in latest],
        [s.criticality for s in latest],
        [dict(s.external_ids) for s in latest],
        [s.version for s in latest],
        [s.updated_at for s in latest],
    )
    applied = {r["id"] for r in rows}
    if not applied:
        return 0
    await conn.execute(
        "DELETE FROM proj_ci_external_ids WHERE tenant_id = $1 AND ci_id = ANY($2::text[])",
        tenant_id,
        list(applied),
    )
    pairs = [
        (s.id, source, external_id)
        for s in latest
        if s.id in applied
        for source, external_id in s.external_ids.items()
    ]
    if pairs:
        await conn.execute(
            "INSERT INTO proj_ci_external_ids (tenant_id, ci_id, source, external_id)"
            " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])",
            tenant_id,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            [p[2] for p in pairs],
        )
    return len(applied)


async def upsert_memberships(
    conn: Connection, tenant_id: str, changes: Sequence[ServiceMembershipChangedV1]
) -> int:
    """Apply changes of the services CIs support; a change whose sequence is not above the
    stored one is ignored. Return how many rows changed."""
    latest = _latest(changes, key=lambda c: c.ci_id, number=lambda c: c.sequence)
    if not latest:
        return 0
    result = await conn.execute(
        "INSERT INTO proj_ci_services (tenant_id, ci_id, services, sequence)"
        " SELECT $1, t.ci_id, ARRAY(SELECT jsonb_array_elements_text(t.services::jsonb)),"
        " t.sequence FROM unnest($2::text[], $3::text[], $4::integer[])"
        " AS t(ci_id, services, sequence)"
        " ON CONFLICT (tenant_id, ci_id) DO UPDATE SET services = EXCLUDED.services,"
        " sequence = EXCLUDED.sequence"
        " WHERE proj_ci_services.sequence < EXCLUDED.sequence",
        tenant_id,
        [c.ci_id for c in latest],
        # JSON text: asyncpg would read a list of lists as a two-dimensional array.
        [json.dumps(sorted(c.services)) for c in latest],
        [c.sequence for c in latest],
    )
    return _count(result)


async def upsert_business_service(
    conn: Connection, tenant_id: str, service: BusinessServiceDefinedV1
) -> bool:
    """Apply a business service's catalogue entry unless a newer version is stored."""
    result = await conn.execute(
        "INSERT INTO proj_business_services (tenant_id, id, name, status, criticality, owner,"
        " customer, availability_target, sla_policy, version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,"
        " status = EXCLUDED.status, criticality = EXCLUDED.criticality, owner = EXCLUDED.owner,"
        " customer = EXCLUDED.customer, availability_target = EXCLUDED.availability_target,"
        " sla_policy = EXCLUDED.sla_policy, version = EXCLUDED.version"
        " WHERE proj_business_services.version < EXCLUDED.version",
        tenant_id,
        service.id,
        service.name,
        service.status,
        service.criticality,
        service.owner,
        service.customer,
        service.availability_target,
        service.sla_policy,
        service.version,
    )
    return _count(result) == 1


async def upsert_calendar(conn: Connection, tenant_id: str, calendar: CalendarDefinedV1) -> bool:
    """Apply a calendar definition unless a newer version is stored."""
    result = await conn.execute(
        "INSERT INTO proj_calendars (tenant_id, name, description, spec, version)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,"
        " spec = EXCLUDED.spec, version = EXCLUDED.version"
        " WHERE proj_calendars.version < EXCLUDED.version",
        tenant_id,
        calendar.name,
        calendar.description,
        calendar.calendar.model_dump(mode="json"),
        calendar.version,
    )
    return _count(result) == 1


async def upsert_policy(
    conn: Connection, tenant_id: str, policy: SlaPolicyDefinedV1, defined_at: datetime
) -> bool:
    """Apply an SLA policy definition (`defined_at`: its event's time) unless a newer
    version is stored."""
    result = await conn.execute(
        "INSERT INTO proj_sla_policies (tenant_id, name, description, targets, calendar_name,"
        " calendar, pause_on, warning_threshold, services, is_default, version, defined_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,"
        " targets = EXCLUDED.targets, calendar_name = EXCLUDED.calendar_name,"
        " calendar = EXCLUDED.calendar, pause_on = EXCLUDED.pause_on,"
        " warning_threshold = EXCLUDED.warning_threshold, services = EXCLUDED.services,"
        " is_default = EXCLUDED.is_default, version = EXCLUDED.version,"
        " defined_at = EXCLUDED.defined_at"
        " WHERE proj_sla_policies.version < EXCLUDED.version",
        tenant_id,
        policy.name,
        policy.description,
        {p: t.model_dump(mode="json") for p, t in policy.targets.items()},
        policy.calendar_name,
        policy.calendar.model_dump(mode="json"),
        list(policy.pause_on),
        policy.warning_threshold,
        sorted(policy.services),
        policy.default,
        policy.version,
        defined_at,
    )
    return _count(result) == 1


def _count(status: str) -> int:
    """The row count of a command tag such as "INSERT 0 3"."""
    return int(status.rsplit(" ", 1)[-1])


# --- Reads --------------------------------------------------------------------------------

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

_POLICY_COLUMNS = (
    "name, version, targets, calendar_name, calendar, pause_on, warning_threshold, is_default"
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


def _policy(row: asyncpg.Record | None) -> PolicySnapshot | None:
    if row is None:
        return None
    targets = cast(dict[str, Any], row["targets"])
    return PolicySnapshot(
        name=row["name"],
        version=row["version"],
        targets={p: SlaTargetV1.model_validate(targets[p]) for p in PRIORITY_NAMES},
        calendar_name=row["calendar_name"],
        calendar=CalendarSpec.model_validate(row["calendar"]),
        pause_on=tuple(row["pause_on"]),
        warning_threshold=row["warning_threshold"],
        default=row["is_default"],
    )


async def ci_by_id(conn: Connection, tenant_id: str, ci_id: str) -> ProjectedCi | None:
    """The CI with this id, or None if no event about it has arrived."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS} FROM proj_cis c WHERE c.tenant_id = $1 AND c.id = $2",  # noqa: S608 - constant columns
        tenant_id,
        ci_id,
    )
    return _ci(row)


async def ci_by_name(conn: Connection, tenant_id: str, name: str) -> ProjectedCi | None:
    """The CI with this name, compared case-insensitively; an exact-case match first, then one
    that is not retired, then the most recently updated, then the lowest id."""
    row = await conn.fetchrow(
        f"SELECT {_CI_COLUMNS} FROM proj_cis c"  # noqa: S608 - constant columns
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
        f"SELECT {_CI_COLUMNS} FROM proj_ci_external_ids x"  # noqa: S608 - constant columns
        " JOIN proj_cis c ON c.tenant_id = x.tenant_id AND c.id = x.ci_id"
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
        f"SELECT {_SERVICE_COLUMNS} FROM proj_business_services"  # noqa: S608 - constant columns
        " WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        service_id,
    )
    return _service(row)


async def service_by_name(conn: Connection, tenant_id: str, name: str) -> ProjectedService | None:
    """The business service with this name, compared case-insensitively; an exact-case match
    first, then one that is not retired, then the lowest id."""
    row = await conn.fetchrow(
        f"SELECT {_SERVICE_COLUMNS} FROM proj_business_services"  # noqa: S608 - constant columns
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
        "SELECT services FROM proj_ci_services WHERE tenant_id = $1 AND ci_id = $2",
        tenant_id,
        ci_id,
    )
    return list(services or [])


async def calendar_by_name(conn: Connection, tenant_id: str, name: str) -> ProjectedCalendar | None:
    """The calendar with this name, or None."""
    row = await conn.fetchrow(
        "SELECT name, description, spec, version FROM proj_calendars"
        " WHERE tenant_id = $1 AND name = $2",
        tenant_id,
        name,
    )
    if row is None:
        return None
    return ProjectedCalendar(
        name=row["name"],
        description=row["description"],
        spec=CalendarSpec.model_validate(row["spec"]),
        version=row["version"],
    )


async def policy_by_name(conn: Connection, tenant_id: str, name: str) -> PolicySnapshot | None:
    """The SLA policy with this name as last defined, or None."""
    row = await conn.fetchrow(
        f"SELECT {_POLICY_COLUMNS} FROM proj_sla_policies"  # noqa: S608 - constant columns
        " WHERE tenant_id = $1 AND name = $2",
        tenant_id,
        name,
    )
    return _policy(row)


async def policy_for(
    conn: Connection, tenant_id: str, services: Sequence[str]
) -> PolicySnapshot | None:
    """The SLA policy that applies to work affecting these business services (module
    docstring): the most demanding policy covering one of them, else the tenant's default
    policy, else None."""
    row = await conn.fetchrow(
        f"SELECT {_POLICY_COLUMNS} FROM ("  # noqa: S608 - constant columns
        f" SELECT {_POLICY_COLUMNS}, defined_at, targets -> 'P1' AS p1,"
        " services && $2::text[] AS covers"
        " FROM proj_sla_policies WHERE tenant_id = $1 AND (services && $2::text[] OR is_default)"
        ") p ORDER BY p.covers DESC,"
        " CASE WHEN p.covers THEN (p.p1 ->> 'resolution_seconds')::bigint END,"
        " CASE WHEN p.covers THEN (p.p1 ->> 'response_seconds')::bigint END,"
        " CASE WHEN NOT p.covers THEN p.defined_at END DESC NULLS LAST,"
        " p.name LIMIT 1",
        tenant_id,
        list(services),
    )
    return _policy(row)
