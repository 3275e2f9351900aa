"""Unauthorized changes: a modification or drift on a CI under change control that no change
authorised (found by the config service, `itsm.config.ci.unauthorized_change_detected.v1`)
opens a change record for review: origin `unauthorized`, type `normal`, state `new`, the CI as
its affected CI, a title saying what was found (ISO/IEC 20000-1 8.5.1, 8.2.6).

Exactly once per detection: the detection's event id is kept beside the change it opened
(`unauthorized_detections`), so the event delivered again, or published again, opens nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from services.change.application.uow import ChangeUnitOfWork, ChangeWork, store_new_change
from services.change.domain.change import Change, open_change
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import UnauthorizedChangeDetectedV1
from shared.inbox import ReceivedEvent

ACTOR = "system:change-control"
MAX_TITLE = 200
_FOUND = {"ci_modified": "modified without a change", "drift": "drift found by discovery"}


def title_of(payload: UnauthorizedChangeDetectedV1) -> str:
    """`Unauthorized change on <CI>: <fields> (<how found>)`, cut to the title's limit."""
    fields = ", ".join(sorted(payload.changes)) or "no field named"
    title = f"Unauthorized change on {payload.ci.name}: {fields} ({_FOUND[payload.found_by]})"
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def description_of(payload: UnauthorizedChangeDetectedV1) -> str:
    """What changed, field by field, as the config service reported it."""
    lines = [f"{name}: {change}" for name, change in sorted(payload.changes.items())]
    how = _FOUND[payload.found_by]
    source = f" (import {payload.import_id})" if payload.import_id else ""
    head = f"CI {payload.ci.id} ({payload.ci.ci_class}) {how} by {payload.by}{source}."
    return "\n".join([head, *lines])


async def open_unauthorized(
    uow: ChangeWork,
    payload: UnauthorizedChangeDetectedV1,
    *,
    detection_id: uuid.UUID,
    detected_at: datetime,
    now: datetime | None = None,
) -> Change | None:
    """Open the change that reviews a detection; None if this detection opened one already."""
    if await uow.unauthorized.seen(detection_id):
        return None
    ci_id = uuid.UUID(payload.ci.id)
    change, events = open_change(
        tenant_id=uow.context.tenant_id,
        number=await uow.changes.next_number(),
        type="normal",
        origin="unauthorized",
        title=title_of(payload),
        description=description_of(payload),
        justification="Opened for review: no change authorised this modification of a"
        " configuration item under change control.",
        requester=payload.by,
        actor=uow.context.actor,
        now=now or datetime.now(UTC),
        affected_cis=(ci_id,),
        business_services=tuple(await uow.unauthorized.services_of(ci_id)),
    )
    await store_new_change(uow, change, events)
    await uow.unauthorized.record(
        detection_id,
        change_id=change.id,
        ci_id=ci_id,
        found_by=payload.found_by,
        detected_at=detected_at,
    )
    return change


async def record_detections(
    conn: Connection, events: Sequence[ReceivedEvent], metrics: ChangeMetrics | None
) -> None:
    """Consumer handler (`change-unauthorized`): one change per detection, in the consumer's
    transaction; counted by how it was found."""
    for event in events:
        payload = event.payload
        assert isinstance(payload, UnauthorizedChangeDetectedV1)
        envelope = event.envelope
        context = RequestContext(envelope.tenantid, ACTOR, envelope.correlationid)
        async with ChangeUnitOfWork.joining(conn, context) as uow:
            opened = await open_unauthorized(
                uow, payload, detection_id=envelope.id, detected_at=envelope.time
            )
        if opened is not None and metrics is not None:
            metrics.unauthorized.labels(payload.found_by).inc()
            metrics.changes_created.labels(opened.type, opened.origin).inc()
