"""The incident aggregate (the walking skeleton's minimal form)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.incident.domain.priority import priority_of
from shared.events.catalogue import IncidentCreatedV1


@dataclass(frozen=True)
class Incident:
    """An incident as the service stores it."""

    id: uuid.UUID
    tenant_id: str
    title: str
    description: str
    impact: int
    urgency: int
    priority: int
    state: str
    version: int
    created_at: datetime
    created_by: str


def log_incident(
    *,
    tenant_id: str,
    title: str,
    description: str,
    impact: int,
    urgency: int,
    actor: str,
    now: datetime,
) -> tuple[Incident, IncidentCreatedV1]:
    """A new incident in state `new`, and the event that announces it."""
    incident = Incident(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        title=title,
        description=description,
        impact=impact,
        urgency=urgency,
        priority=priority_of(impact, urgency),
        state="new",
        version=1,
        created_at=now,
        created_by=actor,
    )
    event = IncidentCreatedV1(
        title=title,
        description=description,
        impact=impact,
        urgency=urgency,
        priority=incident.priority,
        state="new",
    )
    return incident, event
