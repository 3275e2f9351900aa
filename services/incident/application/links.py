"""Linking incidents to a problem: through each incident's own update (version, history,
`incident.updated`), with its clocks retargeted when the tenant's matrix has moved its priority
since. Opening a problem by hand and opening one from a trend both link this way."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.incident.adapters.problems import CLOSED
from services.incident.application import sla
from services.incident.application.uow import IncidentWork, store_change
from services.incident.domain import incident as incident_domain
from services.incident.domain import workflow
from services.incident.domain.incident import Incident
from shared.errors import Conflict, FieldError, invalid_field


async def link_incidents(
    uow: IncidentWork,
    problem_id: uuid.UUID,
    number: int,
    incident_ids: tuple[uuid.UUID, ...],
    now: datetime,
    *,
    field: str,
    strict: bool = True,
) -> list[Incident]:
    """Point each incident at problem `problem_id` (PRB`number`).

    `strict` refuses an unknown incident (`ValidationFailed` naming `field`), a closed or
    cancelled one, and one linked to another open problem (`Conflict` naming `field`); otherwise
    those are skipped. Returns the incidents as stored, in id order (the order they are locked
    in).
    """
    settings = await uow.settings.get()
    incidents: list[Incident] = []
    for incident_id in sorted(set(incident_ids)):
        incident = await uow.incidents.get(incident_id, lock=True)
        if incident is None:
            if strict:
                raise invalid_field(field, f"no incident {incident_id}")
            continue
        other = incident.problem_id
        if other is not None and other != problem_id:
            state = await uow.problems.state_of(other)
            if state is not None and state not in CLOSED:
                if strict:
                    raise _conflict(
                        field, f"incident {incident_id} is linked to open problem {other}"
                    )
                continue
        try:
            change = incident_domain.update(
                incident,
                {"problem_id": problem_id},
                actor=uow.context.actor,
                now=now,
                matrix=settings.matrix,
                reason=f"linked to problem PRB{number}",
            )
        except workflow.IllegalTransition:
            if strict:
                raise _conflict(
                    field, f"incident {incident_id} is {incident.state}: it cannot change"
                ) from None
            continue
        if change is None:
            incidents.append(incident)
            continue
        stored = await store_change(uow, change, "problem_linked")
        if "priority" in change.changes:
            await sla.retarget(
                uow, record="incident", record_id=stored.id, at=now, priority=stored.priority
            )
        incidents.append(stored)
    return incidents


def _conflict(field: str, detail: str) -> Conflict:
    return Conflict(detail, fields=[FieldError(field, detail)])
