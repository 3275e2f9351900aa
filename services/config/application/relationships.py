"""Relationship use cases and impact analysis, each in one unit of work."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from services.config.application import membership
from services.config.application.uow import ConfigUnit
from shared.errors import NotFound, invalid_field
from shared.events.catalogue import RelationshipAddedV1, RelationshipRemovedV1, RelationshipV1

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


async def add_relationship(
    uow: ConfigUnit, command: AddRelationship
) -> tuple[dict[str, Any], bool]:
    """Add it (and announce it) unless it is in place; (row, created). Both CIs must exist and
    not be retired (ValidationFailed naming `source_id` or `target_id`), and differ."""
    if command.source_id == command.target_id:
        raise invalid_field("target_id", "a CI cannot relate to itself")
    context = uow.context
    async with uow:
        for field, ci_id in (("source_id", command.source_id), ("target_id", command.target_id)):
            ci = await uow.cis.get(ci_id)
            if ci is None or ci.status == "retired":
                raise invalid_field(field, "no such active CI")
        row = await uow.relationships.add(
            type_=command.type,
            source_id=command.source_id,
            target_id=command.target_id,
            actor=context.actor,
            now=datetime.now(UTC),
        )
        if row is None:
            existing = await uow.relationships.in_place(
                command.type, command.source_id, command.target_id
            )
            assert existing is not None
            return existing, False
        uow.record(str(row["id"]), 1, [RelationshipAddedV1(relationship=wire(row))])
        await _refresh_membership(uow, row)
    return row, True


async def remove_relationship(
    uow: ConfigUnit, relationship_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """Remove a relationship in place (its history stays); NotFound if there is none."""
    async with uow:
        row = await uow.relationships.remove(
            relationship_id, actor=uow.context.actor, now=datetime.now(UTC)
        )
        if row is None:
            raise NotFound("relationship", str(relationship_id))
        uow.record(
            str(row["id"]), 2, [RelationshipRemovedV1(relationship=wire(row), reason=reason)]
        )
        await _refresh_membership(uow, row)
    return row


async def _refresh_membership(uow: ConfigUnit, row: dict[str, Any]) -> None:
    """The dependency side gained or lost dependents: its services (and below) may change."""
    seed = membership.dependency_of(row["type"], row["source_id"], row["target_id"])
    await membership.refresh(uow, [seed])


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
    uow: ConfigUnit,
    ci_id: uuid.UUID,
    *,
    direction: Literal["upward", "downward"],
    depth: int,
) -> Impact:
    """Walk the graph from a CI (NotFound if the tenant has no such CI); writes nothing."""
    started = time.perf_counter()
    async with uow:
        if await uow.cis.get(ci_id) is None:
            raise NotFound("configuration item", str(ci_id))
        truncated, items, services = await uow.relationships.walk(
            ci_id, direction=direction, depth=depth, max_paths=MAX_PATHS
        )
    return Impact(items, services, truncated, time.perf_counter() - started)
