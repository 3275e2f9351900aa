"""Change correlation: an incident on a CI that a change implemented shortly before is flagged
as possibly caused by that change (ISO/IEC 20000-1 8.5.1 meets 8.6.1).

The change service announces `itsm.change.implemented.v1` (change id, CIs, time, outcome) on
`itsm.change.events`; the consumer `incident-change-correlation` records it per CI
(`change_implementations`) and flags the tenant's incidents on those CIs logged within the
tenant's `change_window_seconds` (default 24 h) after the implementation. A new incident looks
the other way (`record_incident`): the most recent change implemented on its CI within the
window before it. Either way the incident gets `suspected_change` (the most recently
implemented suspect, the likeliest cause) and an `itsm.incident.change_suspected.v1` event per
suspected change.

The consumer's transaction is the unit of work's (`reactions.joining`): the incidents' changes
and the suspicion events commit with the consumer's inbox row. Whichever arrives first, a pair
is flagged exactly once: both sides hold the (tenant, CI) lock
of `adapters/changes.py` until they commit, so a change and an incident committed at the same
moment cannot miss each other; a repeated announcement of a change is recorded once and flags
nothing again.
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
from shared.events.catalogue import ChangeImplementedV1
from shared.inbox import ReceivedEvent

CORRELATION_ACTOR = "system:change-correlation"


async def record_implemented(
    conn: Connection, event: ReceivedEvent, metrics: IncidentMetrics | None = None
) -> None:
    """Consumer handler: record a change implemented on CIs and flag the incidents it may have
    caused. A CI id that is not a UUID (no CI of this platform) is refused: the event goes to
    the dead-letter topic with the reason."""
    payload = event.payload
    assert isinstance(payload, ChangeImplementedV1)
    context = RequestContext(
        event.envelope.tenantid, CORRELATION_ACTOR, event.envelope.correlationid
    )
    async with joining(conn, context, metrics) as uow:
        await change_implemented(uow, payload)


async def change_implemented(
    uow: IncidentWork, payload: ChangeImplementedV1, *, now: datetime | None = None
) -> int:
    """Record the change on each of its CIs and flag the incidents logged on them within the
    tenant's window after it; return how many incidents it flagged."""
    try:
        ci_ids = sorted({uuid.UUID(ci) for ci in payload.ci_ids})
    except ValueError:
        raise ValueError(f"ci_ids must be CI ids (UUIDs), got {payload.ci_ids!r}") from None
    window = (await uow.settings.get()).change_window_seconds
    now = now or datetime.now(UTC)
    flagged = 0
    for ci_id in ci_ids:
        await uow.changes.lock_ci(ci_id, shared=False)
        change = ImplementedChange(payload.change_id, ci_id, payload.implemented_at.astimezone(UTC))
        if not await uow.changes.record(change, payload.title, payload.outcome, now):
            continue  # announced before: its incidents are flagged already
        for incident_id in await uow.changes.incidents_after(change, window):
            incident = await uow.incidents.get(incident_id, lock=True)
            if incident is not None and await _flag(uow, incident, change, window, now):
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
                reason=f"change {change.change_id} was implemented on the CI"
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
