"""The incident service's reactions to the events its own use cases record.

They run inside the unit of work that recorded the event (`shared/uow.py`), before its commit:

| event                | reactions                                                          |
|----------------------|--------------------------------------------------------------------|
| `IncidentCreatedV1`  | start the incident's SLA clocks; run the trend detector (suggest   |
|                      | or open a problem, `application/trends.py`)                        |
| `RequestSubmittedV1` | start the request's SLA clocks                                     |
| `IncidentTransitionedV1` | resolved: offer the caller a survey; a major incident's open   |
|                      | outages end (`application/resolution.py`)                          |
| `RequestTransitionedV1` | fulfilled: offer the requester a survey                         |

A known error's workaround is not a reaction: the created event carries it, so the incident
use case reads it before building the incident.

Use cases open their unit of work with `unit_of_work` (on the pool) or `joining` (inside a
transaction the caller holds), both with these reactions. Nothing here imports a use case
module, and no use case module imports another's: the modules that react are below them.
"""

from __future__ import annotations

import asyncpg

from services.incident.application import resolution, sla, trends
from services.incident.application.uow import IncidentUnitOfWork, IncidentWork
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import (
    IncidentCreatedV1,
    IncidentTransitionedV1,
    RequestSubmittedV1,
    RequestTransitionedV1,
)
from shared.uow import Reactions, Recorded


async def start_incident_clocks(uow: IncidentWork, event: Recorded) -> None:
    """A new incident's response and resolution clocks, under its policy (none: no clocks)."""
    incident = uow.latest_incident(event.subject)
    if incident is None or incident.sla_policy is None:
        return
    await sla.start_clocks(
        uow,
        record="incident",
        record_id=incident.id,
        policy=await uow.projection.policy_for(incident.services),
        priority=incident.priority,
        at=incident.created_at,
    )


async def detect_trend(uow: IncidentWork, event: Recorded) -> None:
    """Suggest (or open) a problem when the new incident completes a trend."""
    incident = uow.latest_incident(event.subject)
    if incident is not None:
        await trends.after_incident_logged(uow, incident, await uow.settings.get())


async def start_request_clocks(uow: IncidentWork, event: Recorded) -> None:
    """A new request's response and resolution clocks, under its policy (none: no clocks)."""
    request = uow.latest_request(event.subject)
    if request is None or request.sla_policy is None:
        return
    await sla.start_clocks(
        uow,
        record="request",
        record_id=request.id,
        policy=await uow.projection.policy_for([request.service] if request.service else []),
        priority=request.priority,
        at=request.created_at,
    )


INCIDENT_REACTIONS: Reactions[IncidentWork] = Reactions(
    {
        IncidentCreatedV1: [start_incident_clocks, detect_trend],
        RequestSubmittedV1: [start_request_clocks],
        IncidentTransitionedV1: [
            resolution.survey_resolved_incident,
            resolution.end_outages_of_resolved_incident,
        ],
        RequestTransitionedV1: [resolution.survey_fulfilled_request],
    }
)


def unit_of_work(
    pool: asyncpg.Pool, context: RequestContext, metrics: IncidentMetrics | None = None
) -> IncidentUnitOfWork:
    """A use case's unit of work: one tenant transaction on the pool, with the reactions."""
    return IncidentUnitOfWork(pool, context, INCIDENT_REACTIONS, metrics=metrics)


def joining(
    conn: Connection, context: RequestContext, metrics: IncidentMetrics | None = None
) -> IncidentUnitOfWork:
    """A use case's unit of work inside the caller's transaction on `conn`, with the reactions."""
    return IncidentUnitOfWork.joining(conn, context, INCIDENT_REACTIONS, metrics=metrics)
