"""The incident service's projection of the config service: CIs, services, SLA policies.

Rule 1 of the house: the incident service never calls the config service. It keeps what it
needs from `itsm.config.events`, in two parts (consumers in `entrypoints/consumers.py`):

- the shared CMDB graph projection (`shared/cmdb/`, the `cmdb_*` tables, consumer
  `incident-cmdb-projection`): CIs, relationships, service membership, business services.
  The CI and service reads below are that projection's own reads, under the names
  `application/` calls;
- its own `proj_calendars` and `proj_sla_policies` (migration 0003, consumer
  `incident-config-projection`): what SLA clocks need, which is no part of the CMDB graph.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg

from services.incident.domain.sla import PRIORITY_NAMES, PriorityName
from shared.calendars import CalendarSpec
from shared.cmdb.reads import ProjectedCi as ProjectedCi
from shared.cmdb.reads import ProjectedService as ProjectedService
from shared.cmdb.reads import ci_by_external_id as ci_by_external_id
from shared.cmdb.reads import ci_by_id as ci_by_id
from shared.cmdb.reads import ci_by_name as ci_by_name
from shared.cmdb.reads import service_by_id as service_by_id
from shared.cmdb.reads import service_by_name as service_by_name
from shared.cmdb.reads import services_of_ci as services_of_ci
from shared.cmdb.writes import upsert_business_services
from shared.cmdb.writes import upsert_cis as upsert_cis
from shared.cmdb.writes import upsert_memberships as upsert_memberships
from shared.db import Connection
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CalendarDefinedV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)

# --- What readers get ---------------------------------------------------------------------


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
# CIs, membership and business services are written by the shared CMDB consumer
# (`shared.cmdb.writes`); `upsert_cis`, `upsert_memberships` and this one write them directly.


async def upsert_business_service(
    conn: Connection, tenant_id: str, service: BusinessServiceDefinedV1
) -> bool:
    """Apply a business service's catalogue entry unless a newer version is stored."""
    return await upsert_business_services(conn, tenant_id, [service]) == 1


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

_POLICY_COLUMNS = (
    "name, version, targets, calendar_name, calendar, pause_on, warning_threshold, is_default"
)


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
