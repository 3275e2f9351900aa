"""The change service's reactions to the events its own use cases record.

They run inside the unit of work that recorded the event (`shared/uow.py`), before its commit:

| event                  | reactions                                                        |
|------------------------|------------------------------------------------------------------|
| `ChangeTransitionedV1` | entering `authorize`: open an approval round for the content     |
|                        | hash; leaving it: void what is still open of the round (cab)     |
| `ChangeUpdatedV1`      | approved content edited while in `authorize`: a new round for    |
|                        | the new content hash (the old decisions are void) (cab)          |

`ChangeUnitOfWork` takes these reactions when its caller names none, so that however a change
enters `authorize`, its approvals are asked for; `unit_of_work` and `joining` say so explicitly.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.change.application import approvals
from services.change.application.uow import ChangeUnitOfWork, ChangeWork
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import ChangeTransitionedV1, ChangeUpdatedV1
from shared.uow import Reactions, Recorded


async def approvals_on_transition(uow: ChangeWork, event: Recorded) -> None:
    """Open the approval round of a change entering authorize; close it when it leaves."""
    payload = event.payload
    assert isinstance(payload, ChangeTransitionedV1)
    change = await uow.changes.get(uuid.UUID(payload.change_id))
    if change is None:
        return
    if payload.from_state == "authorize" and payload.to_state != "authorize":
        await approvals.close_round(uow, change.id, now=change.updated_at)
    if payload.to_state == "authorize" and change.state == "authorize":
        await approvals.ensure_round(uow, change, now=change.updated_at)


async def approvals_on_update(uow: ChangeWork, event: Recorded) -> None:
    """A change edited while awaiting approval gets a round for its new content."""
    payload = event.payload
    assert isinstance(payload, ChangeUpdatedV1)
    change = await uow.changes.get(uuid.UUID(payload.change_id))
    if change is not None and change.state == "authorize":
        await approvals.ensure_round(uow, change, now=change.updated_at)


CHANGE_REACTIONS: Reactions[ChangeWork] = Reactions(
    {
        ChangeTransitionedV1: [approvals_on_transition],
        ChangeUpdatedV1: [approvals_on_update],
    }
)


def unit_of_work(pool: asyncpg.Pool, context: RequestContext) -> ChangeUnitOfWork:
    """A use case's unit of work: one tenant transaction on the pool, with the reactions."""
    return ChangeUnitOfWork(pool, context, CHANGE_REACTIONS)


def joining(conn: Connection, context: RequestContext) -> ChangeUnitOfWork:
    """A use case's unit of work inside the caller's transaction on `conn`, with the reactions."""
    return ChangeUnitOfWork.joining(conn, context, CHANGE_REACTIONS)
