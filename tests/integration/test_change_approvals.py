"""Approvals of a change on the real database and broker: a change entering authorize gets
its policy's steps; approvers decide through the API (segregation of duties, one decision per
person, content-hash binding); the last step schedules the change, a rejection sends it back to
assess; the approver's queue and the CAB meeting's agenda show what awaits; overdue steps are
escalated and never approved."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.change.application import approvals
from services.change.application.uow import ChangeUnitOfWork, store_change
from services.change.domain.change import transition
from shared.db import tenant_transaction
from shared.events.catalogue import CHANGE_EVENTS
from tests.integration.cab_support import (
    context,
    edit_change,
    move,
    new_change,
    read_change,
)
from tests.support import clock_passes, end_offsets, header, read_topic, sample_value

ESCALATED = "itsm.change.approval_escalated.v1"
GROUPS = {"dba": ["dora", "dan", "ivan"]}


@pytest.fixture
async def api(service_client):
    return await service_client("change", approval_escalation_interval_seconds=3600)


@pytest.fixture
def pool(api):
    return api.runtime.pool


@pytest.fixture
def as_(auth, tenant):
    def headers(subject: str, *roles: str) -> dict[str, str]:
        return auth(tenant, *(roles or ("cab_member",)), subject=subject)

    return headers


async def set_policies(api, as_, body):
    admin = as_("ada", "tenant_admin")
    current = await api.get("/approval-policies", headers=admin)
    assert current.status_code == 200, current.text
    saved = await api.put(
        "/approval-policies",
        json=body,
        headers={**admin, "If-Match": current.headers["etag"]},
    )
    assert saved.status_code == 200, saved.text
    return saved.json()


async def default_with_groups(api, as_):
    current = (await api.get("/approval-policies", headers=as_("ada", "tenant_admin"))).json()
    return await set_policies(api, as_, {"rows": current["rows"], "groups": GROUPS})


async def awaiting(pool, tenant):
    change = await new_change(pool, tenant)
    return await move(pool, tenant, change.id, "assess", "authorize")


async def decide(api, headers, change, decision="approve", **body):
    return await api.post(
        f"/changes/{change.id}/approvals", json={"decision": decision, **body}, headers=headers
    )


async def test_a_normal_change_goes_from_authorize_to_scheduled_through_technical_then_cab(
    api, pool, as_, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CHANGE_EVENTS)
    await default_with_groups(api, as_)
    change = await awaiting(pool, tenant)

    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert view["status"] == "pending"
    assert [(s["name"], s["state"]) for s in view["steps"]] == [
        ("technical", "pending"),
        ("cab", "waiting"),
    ]
    assert view["content_hash"] == change.content_hash

    # The CAB cannot jump the technical step: cab members are not its approvers.
    early = await decide(api, as_("carl"), change)
    assert early.status_code == 403, early.text
    assert "not an approver of the technical step" in early.json()["detail"]

    technical = await decide(api, as_("dora", "agent"), change, comment="plan reviewed")
    assert technical.status_code == 201, technical.text
    assert [s["state"] for s in technical.json()["steps"]] == ["approved", "pending"]

    # The CAB step needs two of its members; the first leaves the change in authorize.
    first = await decide(api, as_("carl"), change)
    assert first.status_code == 201, first.text
    assert (await read_change(pool, tenant, change.id)).state == "authorize"
    second = await decide(api, as_("cora"), change, content_hash=change.content_hash)
    assert second.status_code == 201, second.text
    done = second.json()
    assert done["status"] == "approved"
    assert done["approved_by"] == ["dora", "carl", "cora"]

    scheduled = await read_change(pool, tenant, change.id)
    assert scheduled.state == "scheduled"
    assert (
        sample_value(
            api.runtime.registry,
            "itsm_change_approval_wait_seconds_count",
            {"type": "normal", "decision": "approved"},
        )
        >= 1
    )

    def types(records):
        return [header(r, "ce_type") for r in records if r.key == str(change.id).encode()]

    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: "itsm.change.authorized.v1" in types(rs),
    )
    assert "itsm.change.authorized.v1" in types(records)
    recorded = [
        json.loads(r.value)
        for r in records
        if header(r, "ce_type") == "itsm.change.approval_recorded.v1"
    ]
    assert len(recorded) == 3
    assert all(e["change_id"] == str(change.id) for e in recorded)


async def test_the_requester_and_the_implementer_cannot_approve_their_own_change(
    api, pool, as_, tenant
):
    await default_with_groups(api, as_)
    change = await awaiting(pool, tenant)
    for who in ("rita", "ivan"):
        refused = await decide(api, as_(who, "change_manager"), change)
        assert refused.status_code == 403, refused.text
        assert "segregation of duties" in refused.json()["detail"]


async def test_a_second_decision_by_the_same_person_on_a_step_is_409(api, pool, as_, tenant):
    change = await awaiting(pool, tenant)
    # Default policies: change managers approve the technical step too.
    body = (await api.get("/approval-policies", headers=as_("ada", "tenant_admin"))).json()
    body["rows"][2]["steps"][0]["quorum"] = "n_of_m"
    body["rows"][2]["steps"][0]["n"] = 2
    await set_policies(api, as_, {"rows": body["rows"], "groups": GROUPS})
    other = await awaiting(pool, tenant)
    assert (await decide(api, as_("mo", "change_manager"), other)).status_code == 201
    again = await decide(api, as_("mo", "change_manager"), other)
    assert again.status_code == 409, again.text
    assert "counts once" in again.json()["detail"]
    assert change.id != other.id


async def test_a_rejection_sends_the_change_back_to_assess_with_the_comment(api, pool, as_, tenant):
    change = await awaiting(pool, tenant)
    blank = await decide(api, as_("mo", "change_manager"), change, "reject")
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["field"] == "comment"
    rejected = await decide(api, as_("mo", "change_manager"), change, "reject", comment="no tests")
    assert rejected.status_code == 201, rejected.text
    assert rejected.json()["status"] == "rejected"
    back = await read_change(pool, tenant, change.id)
    assert back.state == "assess"
    async with tenant_transaction(pool, tenant) as conn:
        history = await conn.fetchval(
            "SELECT changes FROM change_history WHERE tenant_id = $1 AND change_id = $2"
            " AND action = 'approval rejected'",
            tenant,
            change.id,
        )
    assert history["state"] == {"from": "authorize", "to": "assess"}
    # A change not awaiting approval takes no decision.
    late = await decide(api, as_("carl"), change)
    assert late.status_code == 409


async def test_editing_approved_content_in_authorize_voids_the_decisions_and_opens_a_new_round(
    api, pool, as_, tenant
):
    change = await awaiting(pool, tenant)
    assert (await decide(api, as_("mo", "change_manager"), change)).status_code == 201
    stale_hash = change.content_hash
    edited = await edit_change(pool, tenant, change.id, backout_plan="fail over to the replica")
    assert edited.content_hash != stale_hash

    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert view["round"] == 2
    assert view["status"] == "pending"
    assert [(s["name"], s["state"]) for s in view["steps"]] == [
        ("technical", "pending"),
        ("cab", "waiting"),
    ]
    assert view["approved_by"] == []
    assert [(d["approver"], d["void"]) for d in view["decisions"]] == [("mo", True)]
    # An approver who read the old content is told it changed.
    outdated = await decide(api, as_("mo", "change_manager"), change, content_hash=stale_hash)
    assert outdated.status_code == 409
    assert outdated.json()["errors"][0]["field"] == "content_hash"


async def test_an_edited_scheduled_change_returns_to_authorize_and_needs_approval_again(
    api, pool, as_, tenant
):
    await set_policies(
        api,
        as_,
        {
            "rows": [
                {
                    "name": "one approver",
                    "steps": [
                        {"name": "technical", "approvers": {"users": ["dora"]}, "deadline": "P1D"}
                    ],
                }
            ]
        },
    )
    change = await awaiting(pool, tenant)
    assert (await decide(api, as_("dora", "agent"), change)).status_code == 201
    assert (await read_change(pool, tenant, change.id)).state == "scheduled"
    edited = await edit_change(pool, tenant, change.id, test_plan="run the smoke suite")
    assert edited.state == "authorize"
    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert (view["status"], view["round"]) == ("pending", 2)
    assert [d["void"] for d in view["decisions"]] == [True]


async def test_the_queue_shows_each_approver_what_awaits_them_oldest_deadline_first(
    api, pool, as_, tenant
):
    await default_with_groups(api, as_)
    first = await awaiting(pool, tenant)
    second = await awaiting(pool, tenant)

    dora = (await api.get("/approvals/queue", headers=as_("dora", "agent"))).json()["items"]
    assert [i["change"]["id"] for i in dora] == [str(first.id), str(second.id)]
    assert dora[0]["step"]["name"] == "technical"
    assert dora[0]["awaits"] == "one approval of the technical step"
    assert dora[0]["change"]["reference"] == first.reference
    # Nothing awaits the CAB yet, nor the implementer (who may never approve).
    assert (await api.get("/approvals/queue", headers=as_("carl"))).json()["items"] == []
    ivan = await api.get("/approvals/queue", headers=as_("ivan", "agent"))
    assert ivan.json()["items"] == []

    assert (await decide(api, as_("dora", "agent"), first)).status_code == 201
    dora = (await api.get("/approvals/queue", headers=as_("dora", "agent"))).json()["items"]
    assert [i["change"]["id"] for i in dora] == [str(second.id)]
    carl = (await api.get("/approvals/queue", headers=as_("carl"))).json()["items"]
    assert [(i["change"]["id"], i["step"]["name"]) for i in carl] == [(str(first.id), "cab")]
    assert carl[0]["awaits"] == "2 approvals of the cab step (0 so far)"


async def test_a_cab_meeting_lists_the_changes_awaiting_the_cab_and_records_its_decisions(
    api, pool, as_, tenant
):
    await default_with_groups(api, as_)
    change = await awaiting(pool, tenant)
    not_yet = await awaiting(pool, tenant)
    assert (await decide(api, as_("dora", "agent"), change)).status_code == 201

    planned = await api.post(
        "/cab-meetings",
        json={
            "title": "Weekly CAB",
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "members": ["carl", "cora"],
        },
        headers=as_("mia", "change_manager"),
    )
    assert planned.status_code == 201, planned.text
    meeting = planned.json()
    agenda = (await api.get(f"/cab-meetings/{meeting['id']}", headers=as_("carl"))).json()["agenda"]
    assert [i["change"]["id"] for i in agenda] == [str(change.id)]
    assert agenda[0]["step"]["name"] == "cab"

    path = f"/cab-meetings/{meeting['id']}/decisions"
    outsider = await api.post(
        path, json={"change_id": str(change.id), "decision": "approve"}, headers=as_("cy")
    )
    assert outsider.status_code == 403
    off_agenda = await api.post(
        path, json={"change_id": str(not_yet.id), "decision": "approve"}, headers=as_("carl")
    )
    assert off_agenda.status_code == 409
    for member in ("carl", "cora"):
        decided = await api.post(
            path,
            json={"change_id": str(change.id), "decision": "approve", "comment": "ok in CAB"},
            headers=as_(member),
        )
        assert decided.status_code == 201, decided.text
    assert decided.json()["status"] == "approved"
    assert {d["cab_meeting_id"] for d in decided.json()["decisions"][1:]} == {meeting["id"]}
    assert (await read_change(pool, tenant, change.id)).state == "scheduled"
    agenda = (await api.get(f"/cab-meetings/{meeting['id']}", headers=as_("carl"))).json()["agenda"]
    assert agenda == []


async def test_an_overdue_step_is_escalated_and_never_approved(api, pool, as_, tenant, infra):
    await set_policies(
        api,
        as_,
        {
            "rows": [
                {
                    "name": "quick",
                    "steps": [
                        {"name": "ecab", "approvers": {"roles": ["cab_member"]}, "deadline": 1}
                    ],
                }
            ]
        },
    )
    start = await end_offsets(infra.bootstrap_servers, CHANGE_EVENTS)
    change = await awaiting(pool, tenant)
    (step,) = (
        await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))
    ).json()["steps"]
    # Wait until the database clock is past the one-second deadline, then run a round.
    deadline = datetime.fromisoformat(step["deadline_at"])
    await clock_passes(deadline)
    before = sample_value(api.runtime.registry, "itsm_change_approval_escalations_total")
    assert await approvals.escalate_due(pool, api.runtime.service_metrics) >= 1
    after = sample_value(api.runtime.registry, "itsm_change_approval_escalations_total")
    assert after >= before + 1

    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert view["status"] == "pending"
    assert view["steps"][0]["state"] == "pending"
    assert view["steps"][0]["escalations"] == 1
    assert (await read_change(pool, tenant, change.id)).state == "authorize"
    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: any(header(r, "ce_type") == ESCALATED for r in rs),
    )
    escalated = [json.loads(r.value) for r in records if header(r, "ce_type") == ESCALATED]
    assert escalated[0]["change_id"] == str(change.id)
    # Escalated once per deadline period: the next round finds nothing due yet for it.
    async with tenant_transaction(pool, tenant) as conn:
        escalations = await conn.fetchval(
            "SELECT escalations FROM approval_steps WHERE tenant_id = $1 AND change_id = $2",
            tenant,
            change.id,
        )
    assert escalations == 1


async def test_a_cancelled_change_leaves_nothing_in_the_queue(api, pool, as_, tenant):
    change = await awaiting(pool, tenant)
    await move(pool, tenant, change.id, "cancelled")
    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert [s["state"] for s in view["steps"]] == ["void", "void"]
    queue = await api.get("/approvals/queue", headers=as_("mo", "change_manager"))
    assert queue.json()["items"] == []


async def test_approvals_of_an_unknown_change_are_404(api, as_):
    missing = uuid.uuid4()
    assert (
        await api.get(f"/changes/{missing}/approvals", headers=as_("a", "auditor"))
    ).status_code == 404
    assert (await decide(api, as_("carl"), type("C", (), {"id": missing}))).status_code == 404


async def test_a_change_moved_by_any_unit_of_work_of_the_service_gets_its_approval_round(
    api, pool, as_, tenant
):
    # The change use cases open `ChangeUnitOfWork(pool, context)`: it carries the reactions.
    change = await new_change(pool, tenant)
    async with ChangeUnitOfWork(pool, context(tenant, "mia")) as uow:
        current = await uow.changes.get(change.id, lock=True)
        assert current is not None
        for state in ("assess", "authorize"):
            moved = transition(current, state, actor="mia", now=datetime.now(UTC))
            current = await store_change(uow, moved, "transitioned")
    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert (view["status"], [s["name"] for s in view["steps"]]) == (
        "pending",
        ["technical", "cab"],
    )


async def test_an_edited_standard_change_is_no_longer_pre_approved_and_needs_a_change_manager(
    api, pool, as_, tenant
):
    change = await new_change(pool, tenant, type="standard")
    await move(pool, tenant, change.id, "scheduled")
    edited = await edit_change(pool, tenant, change.id, implementation_plan="also patch the OS")
    assert edited.state == "authorize"
    view = (await api.get(f"/changes/{change.id}/approvals", headers=as_("aud", "auditor"))).json()
    assert [(s["name"], s["approvers"]["roles"]) for s in view["steps"]] == [
        ("change_manager", ["change_manager"])
    ]
    assert (await decide(api, as_("mo", "change_manager"), change)).status_code == 201
    assert (await read_change(pool, tenant, change.id)).state == "scheduled"
