"""Problem -> change (ISO/IEC 20000-1 8.6.3 -> 8.5.1): a problem's change request
(`itsm.incident.problem.change_requested.v1`) opens a `normal` change with origin `problem`,
linked to the problem, its incidents and CIs, exactly once per request id.

Exactly once: the change carries the request id (`problem_request_id`, unique per tenant); a
redelivered event is skipped by the inbox, and the same request arriving as another event (a
replay, a republished outbox row) finds its change and creates nothing.

The problem's CIs were valid in the incident service's projection; one this service's
projection does not know (yet) or knows as retired is left out and named in the description,
rather than losing the request to the dead-letter topic.
"""

from __future__ import annotations

import uuid

from services.change.application.changes import NewChange, observe, raise_change_in
from services.change.application.uow import ChangeUnitOfWork
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import ProblemChangeRequestedV1
from shared.events.envelope import Envelope
from shared.records.sql import Condition

ACTOR = "system:problem-change"


def _uuids(values: list[str]) -> tuple[uuid.UUID, ...]:
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return tuple(found)


async def open_requested_change(
    conn: Connection,
    envelope: Envelope,
    payload: ProblemChangeRequestedV1,
    metrics: ChangeMetrics | None,
) -> bool:
    """Open the change the problem asks for, unless this request already has one; inside the
    consumer's transaction (its tenant set). Whether a change was opened."""
    request_id = uuid.UUID(payload.request_id)
    context = RequestContext(envelope.tenantid, ACTOR, envelope.correlationid)
    async with ChangeUnitOfWork.joining(conn, context) as uow:
        existing = await uow.changes.search(
            [Condition("r.problem_request_id = {p}", request_id)], after=None, limit=1
        )
        if existing:
            return False
        known: list[uuid.UUID] = []
        left_out: list[uuid.UUID] = []
        for ci_id in _uuids(payload.ci_ids):
            ci = await uow.projection.ci(ci_id)
            (known if ci is not None and ci.status != "retired" else left_out).append(ci_id)
        description = payload.description
        if left_out:
            names = ", ".join(str(c) for c in left_out)
            description += f"\n\nCIs of the problem not known to the change service: {names}"
        command = NewChange(
            type="normal",
            title=payload.title,
            description=description,
            justification=(
                f"Requested by problem {envelope.subject}"
                + (f" (known error {payload.known_error_id})" if payload.known_error_id else "")
            ),
            requester=envelope.actor,
            affected_cis=tuple(known),
            incidents=_uuids(payload.incidents),
            problems=(uuid.UUID(envelope.subject),),
        )
        change = await raise_change_in(
            uow,
            command,
            origin="problem",
            problem_request_id=request_id,
            check_incidents=False,  # the problem's own incidents: the incident service knows them
        )
        recorded = uow.recorded
    # Counted before the consumer's commit: a rolled-back batch is redelivered and would count
    # again, which the inbox makes rare (only a failure between here and the commit).
    observe(metrics, recorded, [change])
    return True
