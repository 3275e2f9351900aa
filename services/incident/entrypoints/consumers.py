"""The incident service's consumers: the CMDB graph projection and its SLA projection of the
config service's events, and change correlation on the change service's.

`incident-cmdb-projection` is the shared CMDB consumer (`shared/cmdb/consumer.py`): CIs,
relationships, service membership and business services into the `cmdb_*` tables.

`incident-config-projection` keeps calendars and SLA policies in the `proj_*` tables
(`adapters/projections.py`).

`incident-change-correlation` handles `ChangeImplementedV1` from `itsm.change.events` and the
CI events of `itsm.config.events` that carry a `change_id` (`application/correlation.py`); CI
writes naming no change are skipped.

`incident-problem-changes` reads `ChangeCreatedV1` and `ChangeTransitionedV1` of changes that
answer problems, so a problem shows its changes' numbers and states
(`adapters/problem_changes.py`).

Each declares the event classes it handles and one batch handler; other event types on its
topic are skipped: not applied, not recorded in the inbox, not dead-lettered. A message that
cannot be decoded or validated is dead-lettered by the shared `EventConsumer`, like every
consumer's, and so is an event its handler fails on (applied alone, in a batch of one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.incident.adapters import problem_changes, projections
from services.incident.application import correlation
from services.incident.metrics import IncidentMetrics
from services.incident.settings import SERVICE
from shared.cmdb.consumer import cmdb_consumer, consumer_name
from shared.db import Connection
from shared.events.catalogue import (
    CalendarDefinedV1,
    ChangeCreatedV1,
    ChangeImplementedV1,
    ChangeTransitionedV1,
    CiCreatedV1,
    CiRetiredV1,
    CiUpdatedV1,
    SlaPolicyDefinedV1,
)
from shared.inbox import EventConsumer, ReceivedEvent
from shared.logging import bound_correlation_id

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

CMDB_PROJECTION_CONSUMER = consumer_name(SERVICE.name)
CONFIG_PROJECTION_CONSUMER = "incident-config-projection"
CHANGE_CORRELATION_CONSUMER = "incident-change-correlation"
PROBLEM_CHANGES_CONSUMER = "incident-problem-changes"


async def apply_calendars_and_policies(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Calendars and SLA policies defined or redefined (policies are republished when their
    calendar changes); stale versions change nothing. These are few: one statement each."""
    for event in events:
        payload = event.payload
        tenant_id = event.envelope.tenantid
        if isinstance(payload, CalendarDefinedV1):
            await projections.upsert_calendar(conn, tenant_id, payload)
        elif isinstance(payload, SlaPolicyDefinedV1):
            await projections.upsert_policy(conn, tenant_id, payload, event.envelope.time)
        else:
            raise TypeError(f"the SLA projection does not apply {event.envelope.type}")


def cmdb_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the incident service's CMDB graph projection (`shared/cmdb/`)."""
    return cmdb_consumer(
        SERVICE.name,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def config_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the calendars and SLA policies the incident service's clocks run on."""
    return EventConsumer(
        name=CONFIG_PROJECTION_CONSUMER,
        handles=(CalendarDefinedV1, SlaPolicyDefinedV1),
        handler=apply_calendars_and_policies,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def change_correlation_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Flags incidents on CIs that a change is being implemented on (a CI written under its
    id) or was implemented on shortly before (`application/correlation.py`)."""
    metrics = runtime.service_metrics
    assert metrics is None or isinstance(metrics, IncidentMetrics)

    async def implemented(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
        for event in events:
            with bound_correlation_id(event.envelope.correlationid):
                await correlation.record_implemented(conn, event, metrics)

    return EventConsumer(
        name=CHANGE_CORRELATION_CONSUMER,
        handles=(ChangeImplementedV1, CiCreatedV1, CiUpdatedV1, CiRetiredV1),
        # Only CI writes under a change matter here: the others (imports among them) are
        # skipped, not kept in the inbox.
        accepts=lambda payload: (
            isinstance(payload, ChangeImplementedV1) or correlation.written_under_a_change(payload)
        ),
        handler=implemented,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


async def apply_problem_changes(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Changes created or moved: their number and state on the problems they answer."""
    for event in events:
        payload = event.payload
        assert isinstance(payload, ChangeCreatedV1 | ChangeTransitionedV1)
        await problem_changes.apply(conn, event.envelope, payload)


def problem_changes_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the changes answering problems (`adapters/problem_changes.py`)."""
    return EventConsumer(
        name=PROBLEM_CHANGES_CONSUMER,
        handles=(ChangeCreatedV1, ChangeTransitionedV1),
        handler=apply_problem_changes,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the incident service."""
    return [
        cmdb_projection_consumer(runtime),
        config_projection_consumer(runtime),
        change_correlation_consumer(runtime),
        problem_changes_consumer(runtime),
    ]
