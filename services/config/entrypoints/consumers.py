"""The config service's consumer: `config-change-projection` keeps what the config service
knows of the change service's changes (number, state, affected CIs) in `change_projection`
(`adapters/change_control.py`), from `ChangeCreatedV1`, `ChangeUpdatedV1` (an edit of
`affected_cis`) and `ChangeTransitionedV1` on `itsm.change.events`. A CI write's `change_id`
is checked against it (`domain/change_control.py`).

Each row keeps the change's version it reflects (the events' `itsmversion`), so an older
event delivered again changes nothing; the inbox makes a redelivered one a no-op anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.config.adapters import change_control
from shared.db import Connection
from shared.events.catalogue import ChangeCreatedV1, ChangeTransitionedV1, ChangeUpdatedV1
from shared.inbox import EventConsumer, ReceivedEvent

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

CHANGE_PROJECTION_CONSUMER = "config-change-projection"


def _ids(values: Sequence[str]) -> list[uuid.UUID]:
    # A change's affected CIs are CI ids; anything else is a bad event (dead-lettered).
    return [uuid.UUID(v) for v in values]


async def apply_changes(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Apply one tenant's change events, in order, to the projection."""
    for event in events:
        payload, envelope = event.payload, event.envelope
        tenant_id, version, at = envelope.tenantid, envelope.itsmversion, envelope.time
        if isinstance(payload, ChangeCreatedV1):
            await change_control.change_created(
                conn,
                tenant_id,
                uuid.UUID(payload.change_id),
                number=payload.number,
                affected_cis=_ids(payload.ci_ids),
                version=version,
                at=at,
            )
        elif isinstance(payload, ChangeUpdatedV1):
            edited = payload.changes.get("affected_cis")
            if edited is not None:
                await change_control.change_cis(
                    conn,
                    tenant_id,
                    uuid.UUID(payload.change_id),
                    _ids(edited.get("to") or []),
                    version=version,
                    at=at,
                )
        elif isinstance(payload, ChangeTransitionedV1):
            await change_control.change_moved(
                conn,
                tenant_id,
                uuid.UUID(payload.change_id),
                number=payload.number,
                state=payload.to_state,
                version=version,
                at=at,
            )
        else:
            raise TypeError(f"the change projection does not apply {envelope.type}")


def change_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the projection of changes a CI write's `change_id` is checked against."""
    return EventConsumer(
        name=CHANGE_PROJECTION_CONSUMER,
        handles=(ChangeCreatedV1, ChangeUpdatedV1, ChangeTransitionedV1),
        handler=apply_changes,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the config service."""
    return [change_projection_consumer(runtime)]
