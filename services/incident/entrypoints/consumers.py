"""The incident service's consumers: its projection of the config service's events, and change
correlation on the change service's.

`incident-config-projection` reads `itsm.config.events` and keeps CIs, service membership,
business services, calendars and SLA policies in the `proj_*` tables
(`adapters/projections.py`). Other config event types (relationships, CI classes, drift,
imports, baselines) have no handler and are skipped: not applied, not recorded in the inbox,
not dead-lettered. A message that cannot be decoded or validated is dead-lettered by the
shared `EventConsumer`, like every consumer's.

`incident-change-correlation` reads `itsm.change.events` and handles
`itsm.change.implemented.v1` only (`application/correlation.py`).

Config batches are applied in bulk (one statement per kind of record and tenant); if a batch fails,
the shared consumer redoes it event by event with the per-type handlers, which have the same
effect, and dead-letters only the event that fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.incident.adapters import projections
from services.incident.application import correlation
from services.incident.metrics import IncidentMetrics
from shared.db import Connection
from shared.events.catalogue import (
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    BusinessServiceDefinedV1,
    CalendarDefinedV1,
    CiCreatedV1,
    CiRetiredV1,
    CiUpdatedV1,
    ServiceMembershipChangedV1,
    SlaPolicyDefinedV1,
)
from shared.inbox import EventConsumer, EventHandler, ReceivedEvent

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

CONFIG_PROJECTION_CONSUMER = "incident-config-projection"
CHANGE_CORRELATION_CONSUMER = "incident-change-correlation"
CHANGE_IMPLEMENTED = "itsm.change.implemented.v1"

CI_EVENTS = (
    "itsm.config.ci.created.v1",
    "itsm.config.ci.updated.v1",
    "itsm.config.ci.retired.v1",
)
MEMBERSHIP_CHANGED = "itsm.config.service_membership.changed.v1"
BUSINESS_SERVICE_DEFINED = "itsm.config.business_service.defined.v1"
CALENDAR_DEFINED = "itsm.config.calendar.defined.v1"
SLA_POLICY_DEFINED = "itsm.config.sla_policy.defined.v1"


async def apply_ci(conn: Connection, event: ReceivedEvent) -> None:
    """A CI was created, updated or retired: keep its latest state."""
    payload = event.payload
    assert isinstance(payload, CiCreatedV1 | CiUpdatedV1 | CiRetiredV1)
    await projections.upsert_cis(conn, event.envelope.tenantid, [payload.ci])


async def apply_membership(conn: Connection, event: ReceivedEvent) -> None:
    """The services a CI supports changed."""
    payload = event.payload
    assert isinstance(payload, ServiceMembershipChangedV1)
    await projections.upsert_memberships(conn, event.envelope.tenantid, [payload])


async def apply_business_service(conn: Connection, event: ReceivedEvent) -> None:
    """A business service's catalogue entry was defined or changed."""
    payload = event.payload
    assert isinstance(payload, BusinessServiceDefinedV1)
    await projections.upsert_business_service(conn, event.envelope.tenantid, payload)


async def apply_calendar(conn: Connection, event: ReceivedEvent) -> None:
    """A business-hours calendar was defined or redefined."""
    payload = event.payload
    assert isinstance(payload, CalendarDefinedV1)
    await projections.upsert_calendar(conn, event.envelope.tenantid, payload)


async def apply_policy(conn: Connection, event: ReceivedEvent) -> None:
    """An SLA policy was defined or redefined (or republished for its calendar)."""
    payload = event.payload
    assert isinstance(payload, SlaPolicyDefinedV1)
    await projections.upsert_policy(conn, event.envelope.tenantid, payload, event.envelope.time)


HANDLERS: dict[str, EventHandler] = {
    **dict.fromkeys(CI_EVENTS, apply_ci),
    MEMBERSHIP_CHANGED: apply_membership,
    BUSINESS_SERVICE_DEFINED: apply_business_service,
    CALENDAR_DEFINED: apply_calendar,
    SLA_POLICY_DEFINED: apply_policy,
}


async def apply_many(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """One tenant's batch at once: CIs and memberships in one statement each (imports bring
    them by the thousand), the rare catalogue events one by one. The same effect as the
    handlers one after another, because every write keeps only the highest version."""
    if not events:
        return
    tenant_id = events[0].envelope.tenantid
    cis = []
    memberships = []
    for event in events:
        payload = event.payload
        if isinstance(payload, CiCreatedV1 | CiUpdatedV1 | CiRetiredV1):
            cis.append(payload.ci)
        elif isinstance(payload, ServiceMembershipChangedV1):
            memberships.append(payload)
        else:
            await HANDLERS[event.envelope.type](conn, event)
    await projections.upsert_cis(conn, tenant_id, cis)
    await projections.upsert_memberships(conn, tenant_id, memberships)


def config_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the incident service's projection of the config service's events."""
    return EventConsumer(
        name=CONFIG_PROJECTION_CONSUMER,
        topics=[CONFIG_EVENTS],
        handlers=HANDLERS,
        bulk_handler=apply_many,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def change_correlation_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Flags incidents on CIs that a change implemented shortly before
    (`application/correlation.py`)."""
    metrics = runtime.service_metrics
    assert metrics is None or isinstance(metrics, IncidentMetrics)

    async def implemented(conn: Connection, event: ReceivedEvent) -> None:
        await correlation.record_implemented(conn, event, metrics)

    return EventConsumer(
        name=CHANGE_CORRELATION_CONSUMER,
        topics=[CHANGE_EVENTS],
        handlers={CHANGE_IMPLEMENTED: implemented},
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the incident service."""
    return [config_projection_consumer(runtime), change_correlation_consumer(runtime)]
