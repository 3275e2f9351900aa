"""Writes of the CMDB graph projection, one statement per kind of record and tenant.

Every write keeps only the highest version of each record (CIs, business services:
their version; relationships: their event's `itsmversion`, 1 when added and 2 when removed;
service membership: the per-CI sequence). An older event arriving late changes nothing, so
writing a batch at once has the effect of writing its events one after another, in any order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from shared.db import Connection
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CiStateV1,
    RelationshipV1,
    ServiceMembershipChangedV1,
)

_V = TypeVar("_V")


@dataclass(frozen=True)
class RelationshipState:
    """A relationship as its last event left it: in place, or removed (for good)."""

    relationship: RelationshipV1
    removed: bool
    version: int


def latest(items: Iterable[_V], key: Callable[[_V], str], number: Callable[[_V], int]) -> list[_V]:
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
    chosen = latest(states, key=lambda s: s.id, number=lambda s: s.version)
    if not chosen:
        return 0
    rows = await conn.fetch(
        "INSERT INTO cmdb_cis (tenant_id, id, ci_class, name, status, owner_team, criticality,"
        " external_ids, version, updated_at)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::smallint[], $8::jsonb[], $9::integer[], $10::timestamptz[])"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET ci_class = EXCLUDED.ci_class,"
        " name = EXCLUDED.name, status = EXCLUDED.status, owner_team = EXCLUDED.owner_team,"
        " criticality = EXCLUDED.criticality, external_ids = EXCLUDED.external_ids,"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE cmdb_cis.version < EXCLUDED.version"
        " RETURNING id",
        tenant_id,
        [s.id for s in chosen],
        [s.ci_class for s in chosen],
        [s.name for s in chosen],
        [s.status for s in chosen],
        [s.owner_team for s in chosen],
        [s.criticality for s in chosen],
        [dict(s.external_ids) for s in chosen],
        [s.version for s in chosen],
        [s.updated_at for s in chosen],
    )
    applied = {r["id"] for r in rows}
    if not applied:
        return 0
    await conn.execute(
        "DELETE FROM cmdb_ci_external_ids WHERE tenant_id = $1 AND ci_id = ANY($2::text[])",
        tenant_id,
        list(applied),
    )
    pairs = [
        (s.id, source, external_id)
        for s in chosen
        if s.id in applied
        for source, external_id in s.external_ids.items()
    ]
    if pairs:
        await conn.execute(
            "INSERT INTO cmdb_ci_external_ids (tenant_id, ci_id, source, external_id)"
            " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])",
            tenant_id,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            [p[2] for p in pairs],
        )
    return len(applied)


async def upsert_relationships(
    conn: Connection, tenant_id: str, states: Sequence[RelationshipState]
) -> int:
    """Apply relationships added or removed; a state whose version is not above the stored one
    is ignored. Return how many rows changed."""
    chosen = latest(states, key=lambda s: s.relationship.id, number=lambda s: s.version)
    if not chosen:
        return 0
    result = await conn.execute(
        "INSERT INTO cmdb_relationships (tenant_id, id, type, source_id, target_id, removed,"
        " version)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::boolean[], $7::integer[])"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET removed = EXCLUDED.removed,"
        " version = EXCLUDED.version"
        " WHERE cmdb_relationships.version < EXCLUDED.version",
        tenant_id,
        [s.relationship.id for s in chosen],
        [s.relationship.type for s in chosen],
        [s.relationship.source_id for s in chosen],
        [s.relationship.target_id for s in chosen],
        [s.removed for s in chosen],
        [s.version for s in chosen],
    )
    return _count(result)


async def upsert_memberships(
    conn: Connection, tenant_id: str, changes: Sequence[ServiceMembershipChangedV1]
) -> int:
    """Apply changes of the services CIs support; a change whose sequence is not above the
    stored one is ignored. Return how many rows changed."""
    chosen = latest(changes, key=lambda c: c.ci_id, number=lambda c: c.sequence)
    if not chosen:
        return 0
    result = await conn.execute(
        "INSERT INTO cmdb_ci_services (tenant_id, ci_id, services, sequence)"
        " SELECT $1, t.ci_id, ARRAY(SELECT jsonb_array_elements_text(t.services::jsonb)),"
        " t.sequence FROM unnest($2::text[], $3::text[], $4::integer[])"
        " AS t(ci_id, services, sequence)"
        " ON CONFLICT (tenant_id, ci_id) DO UPDATE SET services = EXCLUDED.services,"
        " sequence = EXCLUDED.sequence"
        " WHERE cmdb_ci_services.sequence < EXCLUDED.sequence",
        tenant_id,
        [c.ci_id for c in chosen],
        # JSON text: asyncpg would read a list of lists as a two-dimensional array.
        [json.dumps(sorted(c.services)) for c in chosen],
        [c.sequence for c in chosen],
    )
    return _count(result)


async def upsert_business_services(
    conn: Connection, tenant_id: str, services: Sequence[BusinessServiceDefinedV1]
) -> int:
    """Apply business services' catalogue entries; an entry whose version is not above the
    stored one is ignored. Return how many rows changed."""
    chosen = latest(services, key=lambda s: s.id, number=lambda s: s.version)
    if not chosen:
        return 0
    result = await conn.execute(
        "INSERT INTO cmdb_business_services (tenant_id, id, name, status, criticality, owner,"
        " customer, availability_target, sla_policy, version)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::smallint[],"
        " $6::text[], $7::text[], $8::double precision[], $9::text[], $10::integer[])"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,"
        " status = EXCLUDED.status, criticality = EXCLUDED.criticality, owner = EXCLUDED.owner,"
        " customer = EXCLUDED.customer, availability_target = EXCLUDED.availability_target,"
        " sla_policy = EXCLUDED.sla_policy, version = EXCLUDED.version"
        " WHERE cmdb_business_services.version < EXCLUDED.version",
        tenant_id,
        [s.id for s in chosen],
        [s.name for s in chosen],
        [s.status for s in chosen],
        [s.criticality for s in chosen],
        [s.owner for s in chosen],
        [s.customer for s in chosen],
        [s.availability_target for s in chosen],
        [s.sla_policy for s in chosen],
        [s.version for s in chosen],
    )
    return _count(result)


def _count(status: str) -> int:
    """The row count of a command tag such as "INSERT 0 3"."""
    return int(status.rsplit(" ", 1)[-1])
