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

Whichever arrives first, a pair is flagged exactly once: both sides hold the (tenant, CI) lock
of `adapters/changes.py` until they commit, so a change and an incident committed at the same
moment cannot miss each other; a repeated announcement of a change is recorded once and flags
nothing again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.incident.adapters import changes, repository
from services.incident.application.handlers import append_events, store_change, tenant_settings
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
    tenant = event.envelope.tenantid
    try:
        ci_ids = sorted({uuid.UUID(ci) for ci in payload.ci_ids})
    except ValueError:
        raise ValueError(f"ci_ids must be CI ids (UUIDs), got {payload.ci_ids!r}") from None
    window = (await tenant_settings(conn, tenant)).change_window_seconds
    context = RequestContext(tenant, CORRELATION_ACTOR, event.envelope.correlationid)
    now = datetime.now(UTC)
    for ci_id in ci_ids:
        await changes.lock_ci(conn, tenant, ci_id, shared=False)
        change = changes.ImplementedChange(
            payload.change_id, ci_id, payload.implemented_at.astimezone(UTC)
        )
        if not await changes.record(conn, tenant, change, payload.title, payload.outcome, now):
            continue  # announced before: its incidents are flagged already
        for incident_id in await changes.incidents_after(conn, tenant, change, window):
            incident = await repository.get(conn, tenant, incident_id, lock=True)
            flagged = incident is not None and await _flag(
                conn, incident, change, window, context, now
            )
            if flagged and metrics is not None:
                metrics.change_correlations.inc()


async def _flag(
    conn: Connection,
    incident: domain.Incident,
    change: changes.ImplementedChange,
    window: int,
    context: RequestContext,
    now: datetime,
) -> bool:
    """Point the incident at the change if it is the latest suspect; announce the suspicion."""
    current = None
    if incident.suspected_change is not None:
        current = await changes.implemented_at(conn, incident.tenant_id, incident.suspected_change)
    if current is None or current < change.implemented_at:
        settings = await tenant_settings(conn, incident.tenant_id)
        try:
            updated = domain.update(
                incident,
                {"suspected_change": change.change_id},
                actor=context.actor,
                now=now,
                matrix=settings.matrix,
                reason=f"change {change.change_id} was implemented on the CI"
                f" at {change.implemented_at.isoformat()}",
            )
        except workflow.IllegalTransition:  # closed or cancelled meanwhile
            return False
        if updated is not None:
            updated.events.append(change.suspicion(window))
            await store_change(conn, updated, "change_suspected", context)
            return True
    await append_events(conn, incident, [change.suspicion(window)], context)
    return True
