"""The change service's consumers.

`change-cmdb-projection` is the shared CMDB consumer (`shared/cmdb/consumer.py`): CIs,
relationships, service membership and business services into the `cmdb_*` tables, which
validate a change's affected CIs, derive its business services and walk its blast radius.

`change-incident-projection` keeps the incidents the change service cares about (created,
updated, transitioned, declared major) and the incidents flagged as possibly caused by a change
(`adapters/incidents.py`): open major incidents on a change's services and CIs, the incidents an
emergency change links to, and the evidence of a change's outcome.

`change-unauthorized` reads `itsm.config.events` for `UnauthorizedChangeDetectedV1` only: a CI
under change control modified, or found drifted, with no authorising change opens a change
for review, once per detection (`application/unauthorized.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.change.adapters import incidents
from services.change.application.unauthorized import record_detections
from services.change.metrics import ChangeMetrics
from services.change.settings import SERVICE
from shared.cmdb.consumer import cmdb_consumer
from shared.db import Connection
from shared.events.catalogue import (
    ChangeSuspectedV1,
    IncidentCreatedV1,
    IncidentTransitionedV1,
    IncidentUpdatedV1,
    MajorIncidentDeclaredV1,
    UnauthorizedChangeDetectedV1,
)
from shared.inbox import EventConsumer, ReceivedEvent

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

INCIDENT_PROJECTION_CONSUMER = "change-incident-projection"


def cmdb_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the change service's CMDB graph projection (`shared/cmdb/`)."""
    return cmdb_consumer(
        SERVICE.name,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


async def apply_incident_events(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Incident events into the incident projection, in arrival order (one tenant's)."""
    for event in events:
        if isinstance(event.payload, ChangeSuspectedV1):
            await incidents.apply_suspicion(conn, event.envelope, event.payload)
        else:
            await incidents.apply_incident_event(conn, event.envelope, event.payload)


def incident_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the change service's projection of incidents (`adapters/incidents.py`)."""
    return EventConsumer(
        name=INCIDENT_PROJECTION_CONSUMER,
        handles=(
            IncidentCreatedV1,
            IncidentUpdatedV1,
            IncidentTransitionedV1,
            MajorIncidentDeclaredV1,
            ChangeSuspectedV1,
        ),
        handler=apply_incident_events,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


UNAUTHORIZED_CONSUMER = "change-unauthorized"


def unauthorized_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Opens a change for review per unauthorized change the config service detects."""
    metrics = runtime.service_metrics
    assert metrics is None or isinstance(metrics, ChangeMetrics)

    async def detected(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
        await record_detections(conn, events, metrics)

    return EventConsumer(
        name=UNAUTHORIZED_CONSUMER,
        handles=(UnauthorizedChangeDetectedV1,),
        handler=detected,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the change service."""
    return [
        cmdb_projection_consumer(runtime),
        incident_projection_consumer(runtime),
        unauthorized_consumer(runtime),
    ]
