"""Relationship use cases and impact analysis."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from services.config.adapters import cis, relationships
from services.config.application import membership
from shared import outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import RelationshipAddedV1, RelationshipRemovedV1, RelationshipV1
from shared.http.problems import invalid, not_found

MAX_DEPTH = 10
MAX_PATHS = 10_000


@dataclass(frozen=True)
class AddRelationship:
    """Command: `source` <type> `target`."""

    type: str
    source_id: uuid.UUID
    target_id: uuid.UUID


def wire(row: dict[str, Any]) -> RelationshipV1:
    """A relationship row as events carry it."""
    return RelationshipV1(
        id=str(row["id"]),
        type=row["type"],
        source_id=str(row["source_id"]),
        target_id=str(row["target_id"]),
    )


async def _refresh_membership(
    conn: Connection, row: dict[str, Any], context: RequestContext
) -> None:
    """The dependency side gained or lost dependents: its services (and below) may change."""
    seed = membership.dependency_of(row["type"], row["source_id"], row["target_id"])
    await membership.refresh(
        conn, context.tenant_id, [seed], actor=context.actor, correlation_id=context.correlation_id
    )


async def add_relationship(
    pool: asyncpg.Pool, command: AddRelationship, context: RequestContext
) -> tuple[dict[str, Any], bool]:
    """Add it (and announce it) unless it is in place; (row, created). Both CIs must exist."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        for field, ci_id in (("source_id", command.source_id), ("target_id", command.target_id)):
            ci = await cis.get(conn, context.tenant_id, ci_id)
            if ci is None or ci.status == "retired":
                raise invalid([{"in": "body", "field": field, "detail": "no such active CI"}])
        row = await relationships.add(
            conn,
            context.tenant_id,
            type_=command.type,
            source_id=command.source_id,
            target_id=command.target_id,
            actor=context.actor,
            now=datetime.now(UTC),
        )
        if row is None:
            existing = await relationships.in_place(
                conn, context.tenant_id, command.type, command.source_id, command.target_id
            )
            assert existing is not None
            return existing, False
        await outbox.append(
            conn,
            RelationshipAddedV1(relationship=wire(row)),
            subject=str(row["id"]),
            tenant_id=context.tenant_id,
            sequence=1,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
        await _refresh_membership(conn, row, context)
    return row, True


async def remove_relationship(
    pool: asyncpg.Pool, relationship_id: uuid.UUID, reason: str | None, context: RequestContext
) -> dict[str, Any]:
    """Remove a relationship in place (its history stays); 404 if there is none."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        row = await relationships.remove(
            conn, context.tenant_id, relationship_id, actor=context.actor, now=datetime.now(UTC)
        )
        if row is None:
            raise not_found("relationship", str(relationship_id))
        await outbox.append(
            conn,
            RelationshipRemovedV1(relationship=wire(row), reason=reason),
            subject=str(row["id"]),
            tenant_id=context.tenant_id,
            sequence=2,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
        await _refresh_membership(conn, row, context)
    return row


@dataclass(frozen=True)
class Impact:
    """What a walk found: each CI once (shortest depth first) with every path that reaches it.

    `items` and `business_services` are JSON arrays, built by the database, passed through.
    """

    items: str
    business_services: str
    truncated: bool
    seconds: float


async def impact(
    pool: asyncpg.Pool,
    tenant_id: str,
    ci_id: uuid.UUID,
    *,
    direction: Literal["upward", "downward"],
    depth: int,
) -> Impact:
    """Walk the graph from a CI (404 if the tenant has no such CI)."""
    started = time.perf_counter()
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        if await cis.get(conn, tenant_id, ci_id) is None:
            raise not_found("configuration item", str(ci_id))
        truncated, items, services = await relationships.walk(
            conn, tenant_id, ci_id, direction=direction, depth=depth, max_paths=MAX_PATHS
        )
    return Impact(items, services, truncated, time.perf_counter() - started)
