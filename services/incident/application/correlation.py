"""Change correlation: an incident on a CI that a change is being implemented on, or was
implemented on shortly before, is flagged as possibly caused by that change (ISO/IEC 20000-1
8.5.1 meets 8.6.1).

Two announcements put a change on a CI (`change_implementations`, one row per change and CI):
the config service's CI events carrying the `change_id` of the change that authorised the
write (it accepts one only while the change is being implemented: the change is on the CI from
then), and the change service's `itsm.change.implemented.v1` (change id, CIs, the end of the
implementation, outcome) when the change leaves `implement`. A row spans from the first sign
to the latest, and the tenant's incidents on the CI logged from its start until
`change_window_seconds` (default 24 h) after its end are its suspects. So an incident that
follows a CI write during the implementation is flagged while the change is still being
implemented, and the change's outcome proposal sees it before anyone decides the outcome.

The consumer `incident-change-correlation` records each announcement and flags the suspects
not flagged before (those of the span as it was recorded earlier were flagged then, or when
they were logged). A new incident looks the other way (`record_incident`): the most recently
implemented change whose suspects it is among. Either way the incident gets `suspected_change`
(the most recently implemented suspect, the likeliest cause) and an
`itsm.incident.change_suspected.v1` event per suspected change.

The consumer's transaction is the unit of work's (`reactions.joining`): the incidents' changes
and the suspicion events commit with the consumer's inbox row. Whichever arrives first, a pair
is flagged exactly once: both sides hold the (tenant, CI) lock
of `adapters/changes.py` until they commit, so a change and an incident committed at the same
moment cannot miss each other; a repeated announcement of a change (or a CI write within a span
already recorded) flags nothing again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.incident.adapters.changes import ImplementedChange
from services.incident.application.reactions import joining
from services.incident.application.uow import IncidentWork, store_change
from services.incident.domain import incident as domain
from services.incident.domain import workflow
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import ChangeImplementedV1, CiCreatedV1, CiRetiredV1, CiUpdatedV1
from shared.inbox import ReceivedEvent

CORRELATION_ACTOR = "system:change-correlation"


CiWritten = CiCreatedV1 | CiUpdatedV1 | CiRetiredV1


def written_under_a_change(payload: object) -> bool:
    """Whether an event is a CI write under a change's id (the ones correlation reads)."""
    return isinstance(payload, CiWritten) and payload.change_id is not None


async def record_implemented(
    conn: Connection, event: ReceivedEvent, metrics: IncidentMetrics | None = None
) -> None:
    """Consumer handler: record a change implemented on CIs, or a CI written under a change's
    id, and flag the incidents it may have caused. A CI id that is not a UUID (no CI of this
    platform) is refused: the event goes to the dead-letter topic with the reason."""
    payload = event.payload
    context = RequestContext(
        event.envelope.tenantid, CORRELATION_ACTOR, event.envelope.correlationid
    )
    async with joining(conn, context, metrics) as uow:
        if isinstance(payload, ChangeImplementedV1):
            await change_implemented(uow, payload)
        else:
            assert isinstance(payload, CiWritten)
            await ci_written(uow, payload)


async def change_implemented(
    uow: IncidentWork, payload: ChangeImplementedV1, *, now: datetime | None = None
) -> int:
    """Record the change on each of its CIs until its implementation ended and flag the
    incidents logged on them within the tenant's window after it; return how many incidents it
    flagged."""
    try:
        ci_ids = sorted({uuid.UUID(ci) for ci in payload.ci_ids})
    except ValueError:
        raise ValueError(f"ci_ids must be CI ids (UUIDs), got {payload.ci_ids!r}") from None
    at = payload.implemented_at.astimezone(UTC)
    flagged = 0
    for ci_id in ci_ids:
        change = ImplementedChange(payload.change_id, ci_id, at)
        flagged += await _on_ci(uow, change, payload.title, payload.outcome, now)
    return flagged


async def ci_written(
    uow: IncidentWork,
    payload: CiCreatedV1 | CiUpdatedV1 | CiRetiredV1,
    *,
    now: datetime | None = None,
) -> int:
    """Record the change named by a CI write as on the CI from the write's time (the config
    service accepted the write only while the change was being implemented) and flag the
    incidents logged on the CI since; return how many it flagged. A write naming no change
    records nothing."""
    if payload.change_id is None:
        return 0
    try:
        ci_id = uuid.UUID(payload.ci.id)
    except ValueError:
        raise ValueError(f"ci.id must be a CI id (UUID), got {payload.ci.id!r}") from None
    change = ImplementedChange(payload.change_id, ci_id, payload.ci.updated_at.astimezone(UTC))
    return await _on_ci(uow, change, None, None, now)


async def _on_ci(
    uow: IncidentWork,
    change: ImplementedChange,
    title: str | None,
    outcome: str | None,
    now: datetime | None,
) -> int:
    """Record one sign of a change on its CI, under the CI's lock, and flag the incidents that
    its span now suspects and did not before."""
    window = (await uow.settings.get()).change_window_seconds
    now = now or datetime.now(UTC)
    await uow.changes.lock_ci(change.ci_id, shared=False)
    before, after = await uow.changes.record(change, title, outcome, now)
    if before == after:
        return 0  # announced before: its incidents are flagged already
    flagged = 0
    for incident_id in await uow.changes.incidents_suspecting(after, window, known=before):
        incident = await uow.incidents.get(incident_id, lock=True)
        if incident is not None and await _flag(uow, incident, after, window, now):
            flagged += 1
            if uow.metrics is not None:
                uow.metrics.change_correlations.inc()
    return flagged


async def _flag(
    uow: IncidentWork,
    incident: domain.Incident,
    change: ImplementedChange,
    window: int,
    now: datetime,
) -> bool:
    """Point the incident at the change if it is the latest suspect; announce the suspicion."""
    current = None
    if incident.suspected_change is not None:
        current = await uow.changes.implemented_at(incident.suspected_change)
    if current is None or current < change.implemented_at:
        settings = await uow.settings.get()
        try:
            updated = domain.update(
                incident,
                {"suspected_change": change.change_id},
                actor=uow.context.actor,
                now=now,
                matrix=settings.matrix,
                reason=f"change {change.change_id} changed the CI"
                f" at {change.implemented_at.isoformat()}",
            )
        except workflow.IllegalTransition:  # closed or cancelled meanwhile
            return False
        if updated is not None:
            updated.events.append(change.suspicion(window))
            await store_change(uow, updated, "change_suspected")
            return True
    uow.record(str(incident.id), incident.version, [change.suspicion(window)])
    return True
