"""Helpers of the risk and approval tests: a change stored and moved through the change
service's own use-case plumbing (the unit of work with its reactions), and CMDB rows seeded in
its projection as the config events leave them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.change.application.reactions import unit_of_work
from services.change.application.uow import store_change, store_new_change
from services.change.domain.change import Change, edit, open_change, transition
from shared.cmdb.writes import (
    RelationshipState,
    upsert_business_services,
    upsert_cis,
    upsert_memberships,
    upsert_relationships,
)
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CiStateV1,
    RelationshipV1,
    ServiceMembershipChangedV1,
)


def context(tenant: str, actor: str = "rita") -> RequestContext:
    return RequestContext(tenant, actor, str(uuid.uuid4()), frozenset({"change_manager"}))


async def new_change(pool: asyncpg.Pool, tenant: str, **fields: Any) -> Change:
    """A normal change in `new`, requested by rita, implemented by ivan, group dba."""
    values: dict[str, Any] = {
        "type": "normal",
        "assignment_group": "dba",
        "implementer": "ivan",
        "backout_plan": "restore the snapshot",
        **fields,
    }
    async with unit_of_work(pool, context(tenant)) as uow:
        number = await uow.changes.next_number()
        change, events = open_change(
            tenant_id=tenant,
            number=number,
            title="Upgrade the payroll database",
            description="",
            justification="end of support",
            requester="rita",
            actor="rita",
            now=datetime.now(UTC),
            **values,
        )
        await store_new_change(uow, change, events)
    return change


async def move(pool: asyncpg.Pool, tenant: str, change_id: uuid.UUID, *states: str) -> Change:
    """Move the change through these states as the change use cases do (with the reactions)."""
    async with unit_of_work(pool, context(tenant, "mia")) as uow:
        change = await uow.changes.get(change_id, lock=True)
        assert change is not None
        for state in states:
            outcome = "successful" if state == "review" else None
            reason = "withdrawn" if state == "cancelled" else None
            moved = transition(
                change, state, actor="mia", now=datetime.now(UTC), outcome=outcome, reason=reason
            )
            change = await store_change(uow, moved, "transitioned")
    return change


async def edit_change(
    pool: asyncpg.Pool, tenant: str, change_id: uuid.UUID, **values: Any
) -> Change:
    """Edit fields of the change as the change use cases do (with the reactions)."""
    async with unit_of_work(pool, context(tenant, "mia")) as uow:
        change = await uow.changes.get(change_id, lock=True)
        assert change is not None
        return await store_change(
            uow, edit(change, values, actor="mia", now=datetime.now(UTC)), "edited"
        )


async def read_change(pool: asyncpg.Pool, tenant: str, change_id: uuid.UUID) -> Change:
    async with unit_of_work(pool, context(tenant)) as uow:
        change = await uow.changes.get(change_id)
        assert change is not None
        return change


def ci(name: str, criticality: int = 3) -> CiStateV1:
    return CiStateV1(
        id=str(uuid.uuid4()),
        ci_class="business_service" if name.startswith("svc-") else "server",
        name=name,
        status="active",
        owner_team="dba",
        criticality=criticality,
        attributes={},
        external_ids={},
        controlled=False,
        version=1,
        updated_at=datetime.now(UTC),
        updated_by="tester",
    )


async def seed_graph(pool: asyncpg.Pool, tenant: str) -> dict[str, str]:
    """db <- app (depends on db) <- web (depends on app); db supports the Payroll service
    (criticality 1). Returns the ids by name."""
    db, app, web = ci("db", 2), ci("app"), ci("web")
    payroll = str(uuid.uuid4())
    async with tenant_transaction(pool, tenant) as conn:
        await upsert_cis(conn, tenant, [db, app, web])
        await upsert_relationships(
            conn,
            tenant,
            [
                RelationshipState(
                    RelationshipV1(
                        id=str(uuid.uuid4()), type="depends_on", source_id=app.id, target_id=db.id
                    ),
                    False,
                    1,
                ),
                RelationshipState(
                    RelationshipV1(
                        id=str(uuid.uuid4()), type="depends_on", source_id=web.id, target_id=app.id
                    ),
                    False,
                    1,
                ),
            ],
        )
        await upsert_memberships(
            conn,
            tenant,
            [ServiceMembershipChangedV1(ci_id=db.id, services=[payroll], previous=[], sequence=1)],
        )
        await upsert_business_services(
            conn,
            tenant,
            [
                BusinessServiceDefinedV1(
                    id=payroll, name="Payroll", status="active", criticality=1, version=1
                )
            ],
        )
    return {"db": db.id, "app": app.id, "web": web.id, "payroll": payroll}
