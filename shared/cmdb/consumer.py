"""The one consumer of the CMDB graph projection: every service that keeps the projection runs
it, in a consumer group of its own (`<service>-cmdb-projection`), on `itsm.config.events`."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.cmdb import writes
from shared.db import Connection
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CiCreatedV1,
    CiRetiredV1,
    CiStateV1,
    CiUpdatedV1,
    EventPayload,
    RelationshipAddedV1,
    RelationshipRemovedV1,
    ServiceMembershipChangedV1,
)
from shared.inbox import EventConsumer, ReceivedEvent
from shared.metrics import PlatformMetrics

# The config events the projection is built from; the others on the topic (CI classes, drift,
# imports, baselines, calendars, SLA policies) are skipped.
HANDLES: tuple[type[EventPayload], ...] = (
    CiCreatedV1,
    CiUpdatedV1,
    CiRetiredV1,
    RelationshipAddedV1,
    RelationshipRemovedV1,
    ServiceMembershipChangedV1,
    BusinessServiceDefinedV1,
)


def consumer_name(service: str) -> str:
    """The consumer (and Kafka consumer group) name of a service's CMDB projection."""
    return f"{service}-cmdb-projection"


async def apply(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Apply one tenant's events: one statement per kind of record, whatever the batch size
    (imports bring CIs by the thousand). Every write keeps the highest version per record, so
    this is the effect of the events one after another, in any order."""
    if not events:
        return
    tenant_id = events[0].envelope.tenantid
    cis: list[CiStateV1] = []
    relationships: list[writes.RelationshipState] = []
    memberships: list[ServiceMembershipChangedV1] = []
    services: list[BusinessServiceDefinedV1] = []
    for event in events:
        payload = event.payload
        if isinstance(payload, CiCreatedV1 | CiUpdatedV1 | CiRetiredV1):
            cis.append(payload.ci)
        elif isinstance(payload, RelationshipAddedV1 | RelationshipRemovedV1):
            removed = isinstance(payload, RelationshipRemovedV1)
            relationships.append(
                writes.RelationshipState(payload.relationship, removed, event.envelope.itsmversion)
            )
        elif isinstance(payload, ServiceMembershipChangedV1):
            memberships.append(payload)
        elif isinstance(payload, BusinessServiceDefinedV1):
            services.append(payload)
        else:
            raise TypeError(f"the CMDB projection does not apply {event.envelope.type}")
    await writes.upsert_cis(conn, tenant_id, cis)
    await writes.upsert_relationships(conn, tenant_id, relationships)
    await writes.upsert_memberships(conn, tenant_id, memberships)
    await writes.upsert_business_services(conn, tenant_id, services)


def cmdb_consumer(
    service: str,
    *,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    metrics: PlatformMetrics,
    max_records: int,
) -> EventConsumer:
    """The consumer that keeps a service's CMDB graph projection in its own schema."""
    return EventConsumer(
        name=consumer_name(service),
        handles=HANDLES,
        handler=apply,
        pool=pool,
        producer=producer,
        metrics=metrics,
        max_records=max_records,
    )
