"""A change's life across the services, over HTTP with real tokens, as people and tools use it:
incidents on a CI -> a problem -> its known error -> a change requested by the problem -> the
change assessed and approved -> implemented, with the CI updated under its id -> a new incident
on that CI flagged as possibly caused by it -> the outcome the evidence proposes (successful
with issues), confirmed -> its post-implementation review -> closed; and every step in the
tenant's verifiable ledger (ISO/IEC 20000-1 8.2.6, 8.5.1, 8.6.1, 8.6.3 and 9.4 together).

Four services run on the session's Kafka and PostgreSQL; the only waits are for what travels
as events (projections, the problem's change, correlation, the ledger), each polled with a
deadline.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.reporting.domain.checkpoints import load_signer
from services.reporting.verifier import VerifierKey, leaf_hash, verify_inclusion
from tests.support import eventually, fetchval_as

DATABASE = {
    "class": "database",
    "name": "orders-db",
    "criticality": 2,
    "owner_team": "dba",
    "attributes": {"engine": "postgresql", "port": 5432, "version": "15.4"},
}

# Who does what: each a person (or tool) with the roles the role matrix gives them.
PEOPLE: dict[str, tuple[str, ...]] = {
    "connie": ("config_manager",),  # keeps the CMDB
    "alice": ("agent",),  # service desk: logs incidents
    "pat": ("problem_manager",),  # owns the problem, asks for the change
    "carol": ("change_manager",),  # runs the change
    "ada": ("tenant_admin",),  # sets the approval policy
    "cora": ("cab_member",),  # the approver: neither requester nor implementer
    "ivan": ("config_manager",),  # implements the change and updates the CI under its id
    "monitoring": ("integration",),  # opens the incident after the change
    "audrey": ("auditor",),  # reads the ledger
}


@pytest.fixture
async def services(service_client) -> dict[str, httpx.AsyncClient]:
    return {
        "config": await service_client("config"),
        "incident": await service_client("incident"),
        "change": await service_client("change"),
        # Checkpoints every half second, so an inclusion proof has a signed root soon.
        "reporting": await service_client("reporting", checkpoint_interval_seconds=0.5),
    }


@pytest.fixture
def as_(auth, tenant) -> Callable[[str], dict[str, str]]:
    """Headers of a person's token: `as_("carol")`."""
    return lambda who: auth(tenant, *PEOPLE[who], subject=who)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    body: dict[str, Any] = response.json()
    return body


def if_match(record: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'"{record["version"]}"'}


async def projected(pool: asyncpg.Pool, tenant: str, query: str, *args: Any) -> None:
    """Wait until a service's projection of another's events holds what the query asks for
    (nothing a user can read shows it; users would retry until it does)."""
    await eventually(lambda: fetchval_as(pool, tenant, query, *args), bool)


def b64(text: str) -> bytes:
    return base64.b64decode(text)


async def test_a_problems_change_from_request_to_closure_with_issues_is_all_in_the_ledger(
    services, as_, tenant, pools, infra
):
    """The problem's change is approved, implemented with the CI updated under its id; the
    incident that follows on the CI is suspected, so the change closes successful with issues
    after its review; the ledger holds each step, under a signed checkpoint."""
    config, incident, change, reporting = (
        services[name] for name in ("config", "incident", "change", "reporting")
    )

    # --- The CMDB: a database CI, its class under change control (8.2.6). ---
    ci = ok(await config.post("/cis", json=DATABASE, headers=as_("connie")), 201)
    control = await config.put(
        "/change-control",
        json={"classes": ["database"]},
        headers={**as_("connie"), "If-Match": '"0"'},
    )
    assert ok(control)["classes"] == ["database"]
    # The incident and change services learn of the CI from the config service's events.
    for name in ("incident", "change"):
        await projected(pools[name], tenant, "SELECT true FROM cmdb_cis WHERE id = $1", ci["id"])

    # --- Incidents on it, a problem linking them, its known error (8.6.1, 8.6.3). ---
    incidents = [
        ok(
            await incident.post(
                "/incidents",
                json={"title": title, "impact": 2, "urgency": 2, "ci_id": ci["id"]},
                headers=as_("alice"),
            ),
            201,
        )
        for title in ("Orders time out", "Checkout fails to save orders")
    ]
    problem = ok(
        await incident.post(
            "/problems",
            json={
                "title": "orders-db runs out of connections",
                "ci_id": ci["id"],
                "incidents": [i["id"] for i in incidents],
            },
            headers=as_("pat"),
        ),
        201,
    )
    assert sorted(problem["incidents"]) == sorted(i["id"] for i in incidents)
    problem = ok(
        await incident.post(
            f"/problems/{problem['id']}/transitions",
            json={"to": "investigating"},
            headers={**as_("pat"), **if_match(problem)},
        )
    )
    problem = ok(
        await incident.post(
            f"/problems/{problem['id']}/known-error",
            json={
                "root_cause": "max_connections 100 is too low for the order peak",
                "workaround": "restart the order workers to release idle connections",
            },
            headers={**as_("pat"), **if_match(problem)},
        )
    )
    assert problem["state"] == "known_error"
    assert problem["known_error_id"] == problem["id"]

    # --- The problem asks for a change; the change service opens it (8.6.3 -> 8.5.1). ---
    requested = ok(
        await incident.post(
            f"/problems/{problem['id']}/change-requests",
            json={
                "title": "Raise max_connections on orders-db to 400",
                "description": "Permanent fix for the known error",
            },
            headers={**as_("pat"), **if_match(problem)},
        ),
        202,
    )
    request_id = requested["request_id"]

    async def problem_view() -> dict[str, Any]:
        return ok(await incident.get(f"/problems/{problem['id']}", headers=as_("pat")))

    shown = await eventually(problem_view, lambda p: len(p["changes"]) == 1)
    [answer] = shown["changes"]
    assert answer["request_id"] == request_id
    assert answer["state"] == "new"
    rfc = ok(await change.get(f"/changes/{answer['change_id']}", headers=as_("carol")))
    change_id = rfc["id"]
    assert rfc["origin"] == "problem"
    assert rfc["type"] == "normal"
    assert rfc["requester"] == "pat"
    assert rfc["affected_ci_ids"] == [ci["id"]]
    assert rfc["problem_ids"] == [problem["id"]]
    assert sorted(rfc["incident_ids"]) == sorted(i["id"] for i in incidents)

    # --- Planned, assessed, and authorized through the real approvals. ---
    now = datetime.now(UTC)
    rfc = ok(
        await change.patch(
            f"/changes/{change_id}",
            json={
                "implementer": "ivan",
                "assignment_group": "dba",
                "planned_start": now.isoformat(),
                "planned_end": (now + timedelta(hours=2)).isoformat(),
                "implementation_plan": "ALTER SYSTEM SET max_connections = 400; restart",
                "backout_plan": "ALTER SYSTEM RESET max_connections; restart",
                "test_plan": "replay the order peak against staging",
            },
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/transitions",
            json={"to": "assess"},
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    assessment = ok(
        await change.post(f"/changes/{change_id}/risk-assessments", json={}, headers=as_("carol")),
        201,
    )
    policies = await change.get("/approval-policies", headers=as_("ada"))
    assert policies.status_code == 200, policies.text
    ok(
        await change.put(
            "/approval-policies",
            json={
                "rows": [
                    {
                        "name": "one technical approval",
                        "steps": [
                            {
                                "name": "technical",
                                "approvers": {"users": ["cora"]},
                                "deadline": "PT8H",
                            }
                        ],
                    }
                ],
                "groups": {},
            },
            headers={**as_("ada"), "If-Match": policies.headers["etag"]},
        )
    )
    rfc = ok(await change.get(f"/changes/{change_id}", headers=as_("carol")))
    assert rfc["risk_level"] == assessment["level"]
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/transitions",
            json={"to": "authorize"},
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    pending = ok(await change.get(f"/changes/{change_id}/approvals", headers=as_("cora")))
    assert pending["status"] == "pending"
    assert [(s["name"], s["state"]) for s in pending["steps"]] == [("technical", "pending")]
    approved = ok(
        await change.post(
            f"/changes/{change_id}/approvals",
            json={
                "decision": "approve",
                "comment": "plan and backout reviewed",
                "content_hash": rfc["content_hash"],
            },
            headers=as_("cora"),
        ),
        201,
    )
    assert approved["status"] == "approved"
    assert approved["approved_by"] == ["cora"]
    rfc = ok(await change.get(f"/changes/{change_id}", headers=as_("carol")))
    assert rfc["state"] == "scheduled"

    # --- Implemented: the CI is changed under the change's id (8.5.1 with 8.2.6). ---
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/transitions",
            json={"to": "implement"},
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    assert rfc["actual_start"] is not None
    await projected(
        pools["config"],
        tenant,
        "SELECT state = 'implement' FROM change_projection WHERE change_id = $1",
        uuid.UUID(change_id),
    )
    updated_ci = ok(
        await config.patch(
            f"/cis/{ci['id']}",
            json={
                "attributes": {**DATABASE["attributes"], "version": "15.5"},
                "reason": "max_connections raised, minor version applied with the restart",
                "change_id": change_id,
            },
            headers={**as_("ivan"), **if_match(ci)},
        )
    )
    assert updated_ci["version"] == 2
    history = ok(await config.get(f"/cis/{ci['id']}/history", headers=as_("connie")))
    assert [v["change_id"] for v in history["items"]] == [None, change_id]

    # The incidents logged before the change are no evidence against it.
    before = ok(await change.get(f"/changes/{change_id}/outcome-proposal", headers=as_("carol")))
    assert (before["proposed_outcome"], before["suspected_incidents"]) == ("successful", [])

    # --- A new incident on the CI is flagged as possibly caused by the change (8.6.1). ---
    after = ok(
        await incident.post(
            "/incidents",
            json={
                "title": "Order API errors after the database restart",
                "impact": 2,
                "urgency": 1,
                "ci_id": ci["id"],
            },
            headers=as_("monitoring"),
        ),
        201,
    )
    # A known error is open on the CI: the new incident gets its workaround too.
    assert after["known_error_id"] == problem["id"]

    async def incident_view() -> dict[str, Any]:
        return ok(await incident.get(f"/incidents/{after['id']}", headers=as_("alice")))

    flagged = await eventually(incident_view, lambda i: i["suspected_change"] == change_id)
    assert flagged["ci_id"] == ci["id"]

    # --- Leaving implement: the evidence proposes successful_with_issues; carol confirms. ---
    async def proposal() -> dict[str, Any]:
        return ok(await change.get(f"/changes/{change_id}/outcome-proposal", headers=as_("carol")))

    proposed = await eventually(
        proposal, lambda p: p["proposed_outcome"] == "successful_with_issues"
    )
    assert [s["incident_id"] for s in proposed["suspected_incidents"]] == [after["id"]]
    rfc = ok(await change.get(f"/changes/{change_id}", headers=as_("carol")))
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/transitions",
            json={"to": "review", "outcome": proposed["proposed_outcome"]},
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    assert (rfc["state"], rfc["outcome"]) == ("review", "successful_with_issues")
    assert rfc["actual_end"] is not None

    # --- The post-implementation review, then closed (8.5.1). ---
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/review",
            json={
                "what_happened": "max_connections raised; the restart broke the order API",
                "lessons": "drain the order workers before restarting orders-db",
                "actions": ["add a drain step to the runbook"],
            },
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    review = ok(await change.get(f"/changes/{change_id}/review", headers=as_("carol")))
    assert review["reviewer"] == "carol"
    rfc = ok(
        await change.post(
            f"/changes/{change_id}/transitions",
            json={"to": "closed"},
            headers={**as_("carol"), **if_match(rfc)},
        )
    )
    assert rfc["state"] == "closed"
    assert rfc["closed_at"] is not None
    shown = await eventually(problem_view, lambda p: p["changes"][0]["state"] == "closed")
    assert shown["changes"][0]["outcome"] == "successful_with_issues"

    # --- Every step is in the tenant's ledger (9.4), each record's timeline across services. ---
    async def timeline(entity: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "200"}
        while True:
            page = ok(
                await reporting.get(
                    f"/ledger/timeline/{entity}", params=params, headers=as_("audrey")
                )
            )
            items.extend(page["items"])
            if not page.get("next_cursor"):
                return items
            params["cursor"] = page["next_cursor"]

    def types(entries: list[dict[str, Any]]) -> list[str]:
        return [e["type"] for e in entries]

    def has_all(wanted: list[str]) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda entries: all(t in types(entries) for t in wanted)

    # The change: its own events, its approvals, the CI update and the suspicion naming it.
    change_steps = [
        "itsm.change.created.v1",
        "itsm.change.updated.v1",
        "itsm.change.risk_assessed.v1",
        "itsm.change.approval_requested.v1",
        "itsm.change.approval_recorded.v1",
        "itsm.change.authorized.v1",
        "itsm.change.transitioned.v1",
        "itsm.change.implemented.v1",
        "itsm.change.reviewed.v1",
        "itsm.config.ci.updated.v1",
        "itsm.incident.change_suspected.v1",
    ]
    change_line = await eventually(lambda: timeline(change_id), has_all(change_steps))
    moves = [
        (e["data"]["from_state"], e["data"]["to_state"])
        for e in change_line
        if e["type"] == "itsm.change.transitioned.v1"
    ]
    assert moves == [
        ("new", "assess"),
        ("assess", "authorize"),
        ("authorize", "scheduled"),
        ("scheduled", "implement"),
        ("implement", "review"),
        ("review", "closed"),
    ]
    [leaving] = [
        e["data"]
        for e in change_line
        if e["type"] == "itsm.change.transitioned.v1" and e["data"]["from_state"] == "implement"
    ]
    assert leaving["outcome"] == leaving["proposed_outcome"] == "successful_with_issues"
    [decision] = [e for e in change_line if e["type"] == "itsm.change.approval_recorded.v1"]
    assert decision["actor"] == "cora"
    [ci_update] = [e for e in change_line if e["type"] == "itsm.config.ci.updated.v1"]
    assert (ci_update["subject"], ci_update["data"]["change_id"]) == (ci["id"], change_id)
    assert ci_update["actor"] == "ivan"
    [suspicion] = [e for e in change_line if e["type"] == "itsm.incident.change_suspected.v1"]
    assert suspicion["subject"] == after["id"]
    [closing] = [e for e in change_line if e["type"] == "itsm.change.transitioned.v1"][-1:]
    assert closing["actor"] == "carol"

    # The problem: created with its incidents, investigated, its known error, its change.
    problem_steps = [
        "itsm.incident.problem.created.v1",
        "itsm.incident.problem.transitioned.v1",
        "itsm.incident.problem.known_error_published.v1",
        "itsm.incident.problem.change_requested.v1",
        "itsm.change.created.v1",
    ]
    problem_line = await eventually(lambda: timeline(problem["id"]), has_all(problem_steps))
    [asked] = [e for e in problem_line if e["type"] == "itsm.incident.problem.change_requested.v1"]
    assert asked["data"]["request_id"] == request_id
    assert asked["actor"] == "pat"

    # The incidents: the first ones linked to the problem, the last one suspected.
    for linked in incidents:
        await eventually(
            lambda linked=linked: timeline(linked["id"]),
            has_all(["itsm.incident.created.v1", "itsm.incident.problem.created.v1"]),
        )
    incident_line = await eventually(
        lambda: timeline(after["id"]),
        has_all(["itsm.incident.created.v1", "itsm.incident.change_suspected.v1"]),
    )

    # The CI: registered, then updated under the change, with its incidents and the problem.
    ci_line = await eventually(
        lambda: timeline(ci["id"]),
        has_all(
            [
                "itsm.config.ci.created.v1",
                "itsm.config.ci.updated.v1",
                "itsm.incident.created.v1",
                "itsm.incident.problem.created.v1",
                "itsm.change.created.v1",
                "itsm.change.implemented.v1",
            ]
        ),
    )
    assert [e["data"]["change_id"] for e in ci_line if e["type"].startswith("itsm.config.ci.")] == [
        None,
        change_id,
    ]

    # --- One step proven: the suspicion is in the log under a signed checkpoint. ---
    [suspected_entry] = [
        e for e in incident_line if e["type"] == "itsm.incident.change_suspected.v1"
    ]

    async def proof() -> httpx.Response:
        return await reporting.get(
            "/ledger/proofs/inclusion",
            params={"event_id": suspected_entry["event_id"]},
            headers=as_("audrey"),
        )

    answer = ok(
        await eventually(
            proof,
            lambda r: r.status_code == 200 and r.json()["tree_size"] > r.json()["index"],
        )
    )
    assert answer["index"] == suspected_entry["leaf_index"]
    verify_inclusion(
        b64(answer["leaf_hash"]),
        answer["index"],
        answer["tree_size"],
        [b64(p) for p in answer["proof"]],
        b64(answer["root_hash"]),
    )
    entries = ok(
        await reporting.get(
            "/ledger/entries",
            params={"start": answer["index"], "end": answer["index"] + 1},
            headers=as_("audrey"),
        )
    )
    assert leaf_hash(b64(entries["entries"][0]["entry"])) == b64(answer["leaf_hash"])
    # The completeness task indexed every row the timelines showed: it found no gap in any
    # record's versions, the change's own included.
    gaps = ok(await reporting.get("/ledger/gaps", params={"state": "open"}, headers=as_("audrey")))
    assert gaps["items"] == [], gaps

    # Signed by the ledger's key, as the auditor holds it (not as the service lists it).
    signer = load_signer(str(infra.ledger_key_file), "itsm.local/ledger")
    signed = VerifierKey.parse(signer.verifier_key).verify(answer["checkpoint"])
    assert (signed.size, signed.root) == (answer["tree_size"], b64(answer["root_hash"]))
