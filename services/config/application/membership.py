"""The derived service-membership fact: recomputed where the graph changed, published on change."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from services.config.adapters import membership
from shared import outbox
from shared.db import Connection
from shared.events.catalogue import ServiceMembershipChangedV1

DEPENDENT_ON_TARGET = frozenset({"depends_on", "runs_on", "hosted_on", "connects_to"})


def dependency_of(type_: str, source_id: uuid.UUID, target_id: uuid.UUID) -> uuid.UUID:
    """The side of a relationship that the other depends on (see migrations/0003)."""
    return target_id if type_ in DEPENDENT_ON_TARGET else source_id


def subject(ci_id: uuid.UUID) -> str:
    """The aggregate of a CI's membership events (and their Kafka key)."""
    return f"membership/{ci_id}"


async def refresh(
    conn: Connection,
    tenant_id: str,
    seeds: Iterable[uuid.UUID],
    *,
    actor: str,
    correlation_id: str | None,
) -> int:
    """Recompute the sets of the seeds and of everything they depend on; publish the changes.

    Seeds are the CIs where the graph changed: the dependency side of an added or removed
    relationship, a new CI, a retired CI. Runs in the caller's transaction; returns how many
    CIs' sets changed.
    """
    distinct = sorted(set(seeds))
    if not distinct:
        return 0
    rows = await membership.supported(conn, tenant_id, distinct)
    changed = [
        (ci, services, previous, sequence + 1)
        for ci, services, previous, sequence in sorted(rows)
        if services != previous
    ]
    if not changed:
        return 0
    stored = [(ci, services, seq) for ci, services, _, seq in changed]
    await membership.record(conn, tenant_id, stored, datetime.now(UTC))
    await outbox.append_many(
        conn,
        [
            outbox.Pending(
                ServiceMembershipChangedV1(
                    ci_id=str(ci),
                    services=[str(s) for s in services],
                    previous=[str(s) for s in previous],
                    sequence=seq,
                ),
                subject(ci),
                seq,
            )
            for ci, services, previous, seq in changed
        ],
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
    )
    return len(changed)
