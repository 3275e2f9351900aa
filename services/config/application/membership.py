"""The derived service-membership fact: recomputed where the graph changed, published on change.

`refresh` runs inside a use case's unit of work and records its events there. `settle` (after
an import, and the sweeper's) is a bulk path: it may announce tens of thousands of sets at
once, so it keeps its own transaction and writes the announcements with one
`outbox.append_many` of payloads built as data (`announcement`), not validated and dumped
again one by one as a unit of work's recorded payloads are.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.config.adapters import membership
from services.config.application.uow import ConfigUnit
from shared import outbox
from shared.db import Connection, all_tenants_transaction, tenant_transaction
from shared.events.catalogue import ServiceMembershipChangedV1

log = logging.getLogger(__name__)

DEPENDENT_ON_TARGET = frozenset({"depends_on", "runs_on", "hosted_on", "connects_to"})


def dependency_of(type_: str, source_id: uuid.UUID, target_id: uuid.UUID) -> uuid.UUID:
    """The side of a relationship that the other depends on (see migrations/0003)."""
    return target_id if type_ in DEPENDENT_ON_TARGET else source_id


def subject(ci_id: uuid.UUID) -> str:
    """The aggregate of a CI's membership events (and their Kafka key)."""
    return f"membership/{ci_id}"


Change = membership.Supported

# Above this many marked CIs, one walk down from every service is cheaper than walking up
# from each CI (and from everything each one depends on).
FULL_WALK_FROM = 200


async def refresh(uow: ConfigUnit, seeds: Iterable[uuid.UUID]) -> int:
    """Recompute the sets of the seeds and of everything they depend on; record the changes.

    Seeds are the CIs where the graph changed: the dependency side of an added or removed
    relationship, a new CI, a retired CI. Runs in the caller's open unit of work; returns how
    many CIs' sets changed.
    """
    distinct = sorted(set(seeds))
    if not distinct:
        return 0
    await uow.membership.lock_tenant()
    rows = await uow.membership.supported(distinct)
    bumped = _bumped([row for row in rows if row[1] != row[2]])
    if not bumped:
        return 0
    await uow.membership.record(
        [(ci, services, seq) for ci, services, _, seq in bumped], datetime.now(UTC)
    )
    for ci, services, previous, seq in bumped:
        uow.record(
            subject(ci),
            seq,
            [
                ServiceMembershipChangedV1(
                    ci_id=str(ci), services=services, previous=previous, sequence=seq
                )
            ],
        )
    return len(bumped)


def _bumped(changed: list[Change]) -> list[Change]:
    """The changed sets in CI order, each with its next sequence."""
    return [(ci, services, previous, seq + 1) for ci, services, previous, seq in sorted(changed)]


async def settle(
    pool: asyncpg.Pool, tenant_id: str, *, actor: str, correlation_id: str | None
) -> int:
    """Recompute what bulk writes marked pending, in one transaction; return the changes."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await membership.lock_tenant(conn, tenant_id)
        pending = await membership.take_pending(conn, tenant_id)
        if not pending:
            return 0
        if len(pending) >= FULL_WALK_FROM:
            changed = await membership.supported_everywhere(conn, tenant_id)
        else:
            rows = await membership.supported(conn, tenant_id, sorted(pending))
            changed = [row for row in rows if row[1] != row[2]]
        return await _publish(conn, tenant_id, changed, actor=actor, correlation_id=correlation_id)


def announcement(
    ci: uuid.UUID, services: list[str], previous: list[str], sequence: int
) -> outbox.Pending:
    """The event of a CI's new set, its payload built as data directly.

    A settle after a large import announces tens of thousands of sets, some of hundreds of
    services each; the sets come from the walk already as sorted text, so they are not
    validated and dumped again (tests check that this is what the model would dump).
    """
    ci_id = str(ci)
    payload = ServiceMembershipChangedV1.model_construct(
        ci_id=ci_id, services=services, previous=previous, sequence=sequence
    )
    data: dict[str, Any] = {
        "ci_id": ci_id,
        "services": services,
        "previous": previous,
        "sequence": sequence,
    }
    return outbox.Pending(payload, subject(ci), sequence, data)


async def sweep_loop(pool: asyncpg.Pool, interval: float) -> None:
    """Settle marks left behind (an import that crashed) every `interval` seconds (supervised:
    an error ends the loop and the supervisor restarts it)."""
    while True:
        async with all_tenants_transaction(pool) as conn:
            tenants = await membership.tenants_pending(conn)
        for tenant in tenants:
            await settle(pool, tenant, actor="system:membership", correlation_id=None)
        await asyncio.sleep(interval)


async def _publish(
    conn: Connection,
    tenant_id: str,
    changed: list[Change],
    *,
    actor: str,
    correlation_id: str | None,
) -> int:
    """Store the new sets and announce each (sequence + 1 per CI)."""
    if not changed:
        return 0
    bumped = _bumped(changed)
    stored = [(ci, services, seq) for ci, services, _, seq in bumped]
    await membership.record(conn, tenant_id, stored, datetime.now(UTC))
    await outbox.append_many(
        conn,
        [announcement(ci, services, previous, seq) for ci, services, previous, seq in bumped],
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
    )
    return len(bumped)
