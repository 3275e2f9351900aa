"""Idempotency-Key on every POST of every service, per tenant and caller, on the real stack."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from services.incident.adapters import projections
from services.reporting.report_wiring import use_report_sources
from shared.db import tenant_transaction
from shared.events.catalogue import BusinessServiceDefinedV1
from tests.conftest import DEFINITIONS
from tests.integration import cab_support
from tests.support import fetchval_as
from tests.unit.fakes_reports import fake_sources

Json = dict[str, Any]
ROLES = ("tenant_admin", "integration", "problem_manager")
SERVER = {"hostname": "srv", "environment": "production"}
# POSTs that act on an existing record: they honour a key through the same middleware, and the
# record's If-Match version already makes a blind retry fail instead of acting twice.
ACTING = {
    ("incident", "/incidents/{incident_id}/transitions"),
    ("incident", "/incidents/{incident_id}/major-review"),
    ("incident", "/requests/{request_id}/transitions"),
    ("incident", "/requests/{request_id}/approvals"),
    ("incident", "/problems/{problem_id}/transitions"),
    ("incident", "/problems/{problem_id}/incidents"),
    ("incident", "/problems/{problem_id}/known-error"),
    ("change", "/changes/{change_id}/transitions"),
    ("change", "/changes/{change_id}/links"),
    ("change", "/changes/{change_id}/backout"),
    ("change", "/changes/{change_id}/review"),
    ("change", "/deployments/{deployment_id}/status"),
    ("change", "/releases/{release_id}/transitions"),
    ("change", "/releases/{release_id}/deployments"),
    ("change", "/releases/{release_id}/evidence"),
    # Signs the tenant's log as it stands (test_ledger_checkpoints.py replays it with its key).
    ("reporting", "/ledger/checkpoints"),
}
# Public POSTs with no caller to key a retry to: a survey link is single use (its second answer
# is a 409, tests/integration/test_surveys_and_outages.py), so a retry never answers twice.
PUBLIC_SINGLE_USE = {("incident", "/surveys/{token}")}


@pytest.fixture
def headers(auth, tenant) -> dict[str, str]:
    return auth(tenant, *ROLES, subject="alice")


async def _incident(api: httpx.AsyncClient, headers: dict[str, str]) -> Json:
    body = {"title": "Payroll down", "impact": 2, "urgency": 2}
    response = await api.post("/incidents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _problem(api: httpx.AsyncClient, headers: dict[str, str]) -> Json:
    response = await api.post("/problems", json={"title": "Deadlocks"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _ci(api: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    body = {"class": "server", "name": name, "attributes": SERVER}
    response = await api.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


Setup = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[tuple[str, Json, dict[str, str]]]]


def _fixed(path: str, body: Json) -> Setup:
    async def setup(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
        return path, body, {}

    return setup


async def _work_note(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    incident = await _incident(api, headers)
    return f"/incidents/{incident['id']}/work-notes", {"note": "rebooted"}, {}


async def _change_request(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    problem = await _problem(api, headers)
    path = f"/problems/{problem['id']}/change-requests"
    return path, {"title": "Add index"}, {"If-Match": f'"{problem["version"]}"'}


async def _relationship(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    source, target = await _ci(api, headers, "app-1"), await _ci(api, headers, "db-1")
    body = {"type": "depends_on", "source_id": source, "target_id": target}
    return "/relationships", body, {}


async def _upload(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    body = b'{"external_id": "h1", "class": "server", "name": "h1", "attributes": {"hostname":'
    body += b' "h1", "environment": "production"}}\n'
    return "/imports?source=vcenter", body, {"Content-Type": "application/x-ndjson"}


def _tenant_of(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    tenants: list[str] = jwt.decode(token, options={"verify_signature": False})["tenants"]
    return tenants[0]


async def _awaiting_cab(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """A change whose pending step is a CAB step the caller (alice) may decide."""
    step = {"name": "cab", "approvers": {"users": ["alice"]}, "deadline": "P1D"}
    policies = {"rows": [{"name": "alice decides", "steps": [step]}]}
    current = await api.get("/approval-policies", headers=headers)
    saved = await api.put(
        "/approval-policies",
        json=policies,
        headers={**headers, "If-Match": current.headers["etag"]},
    )
    assert saved.status_code == 200, saved.text
    pool = api.runtime.pool  # type: ignore[attr-defined]
    tenant = _tenant_of(headers)
    change = await cab_support.new_change(pool, tenant)
    await cab_support.move(pool, tenant, change.id, "assess", "authorize")
    return str(change.id)


async def _risk_assessment(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    change = await cab_support.new_change(api.runtime.pool, _tenant_of(headers))  # type: ignore[attr-defined]
    return f"/changes/{change.id}/risk-assessments", {}, {}


async def _approval(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    change_id = await _awaiting_cab(api, headers)
    return f"/changes/{change_id}/approvals", {"decision": "approve"}, {}


async def _cab_decision(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    change_id = await _awaiting_cab(api, headers)
    meeting = await api.post(
        "/cab-meetings",
        json={"starts_at": "2030-01-07T10:00:00Z", "members": ["alice"]},
        headers=headers,
    )
    assert meeting.status_code == 201, meeting.text
    path = f"/cab-meetings/{meeting.json()['id']}/decisions"
    return path, {"change_id": change_id, "decision": "approve"}, {}


DIGEST = "sha256:" + "d" * 64
WEBHOOK_SECRET = "an-idempotency-walk-secret"


REPORT_DEFINITION: Json = {
    "name": "Monthly",
    "audience": "customer",
    "kpis": [{"id": "incident.volume"}],
}


def _with_report_readers(path: str, body: Json) -> Setup:
    """A report route, the reporting runtime given the readers' test doubles (no KPI part)."""

    async def setup(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
        use_report_sources(api.runtime, fake_sources())  # type: ignore[attr-defined]
        return path, body, {}

    return setup


async def _report(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    use_report_sources(api.runtime, fake_sources())  # type: ignore[attr-defined]
    created = await api.post("/report-definitions", json=REPORT_DEFINITION, headers=headers)
    assert created.status_code == 201, created.text
    return "/reports", {"definition_id": created.json()["id"], "period_start": "2026-11-01"}, {}


AUDIT_FINDING = {
    "audit": "Internal audit 2026-Q4",
    "clause": "8.5.1",
    "finding": "Emergency changes lack a post-implementation review.",
    "severity": "minor_nonconformity",
}


async def _finding_action(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    recorded = await api.post("/audit-findings", json=AUDIT_FINDING, headers=headers)
    assert recorded.status_code == 201, recorded.text
    return f"/audit-findings/{recorded.json()['id']}/improvement-actions", {}, {}


async def _payroll_service(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """A business service in the incident service's projection of the catalogue."""
    tenant = _tenant_of(headers)
    async with tenant_transaction(api.runtime.pool, tenant) as conn:  # type: ignore[attr-defined]
        await projections.upsert_business_services(
            conn,
            tenant,
            [
                BusinessServiceDefinedV1(
                    id=str(uuid.uuid4()), name="payroll", status="active", criticality=2, version=1
                )
            ],
        )


def _outage_body() -> Json:
    return {"services": ["payroll"], "kind": "outage", "start": datetime.now(UTC).isoformat()}


async def _outage(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    await _payroll_service(api, headers)
    return "/outages", _outage_body(), {}


async def _major_incident_outage(api: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    await _payroll_service(api, headers)
    body = {"title": "Payroll down", "impact": 1, "urgency": 1}
    major = await api.post("/incidents", json=body, headers=headers)
    assert major.status_code == 201 and major.json()["major"], major.text
    return f"/incidents/{major.json()['id']}/outages", _outage_body(), {}


def _webhook(tool: str, body: Json, headers: Callable[[bytes], dict[str, str]]) -> Setup:
    """A signed delivery of a tool's webhook, its secret set first by a tenant admin."""

    async def setup(api: httpx.AsyncClient, caller: dict[str, str]) -> Any:
        put = await api.put(
            f"/integrations/{tool}", json={"secret": WEBHOOK_SECRET}, headers=caller
        )
        assert put.status_code == 200, put.text
        tenant = put.json()["webhook_path"].split("/")[2]
        raw = json.dumps(body).encode()
        return (
            f"/webhooks/{tenant}/{tool}",
            raw,
            {"Content-Type": "application/json", **headers(raw)},
        )

    return setup


def _hmac(raw: bytes) -> str:
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()


GITHUB_RULE: Json = {
    "action": "requested",
    "environment": "staging",
    "deployment_callback_url": "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
    "deployment": {"id": 5, "sha": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54"},
    "repository": {"full_name": "o/r"},
}
FLUX_EVENT: Json = {
    "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "apps"},
    "severity": "info",
    "timestamp": "2026-12-03T03:10:00Z",
    "message": "applied",
    "reason": "ReconciliationSucceeded",
    "metadata": {
        "revision": "main@sha1:47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
        "environment": "staging",
    },
    "reportingController": "kustomize-controller",
}
ARGOCD_SYNC: Json = {
    "app": "apps",
    "environment": "staging",
    "revision": "abc",
    "phase": "Succeeded",
}


# Every creating POST of every service, with a request that creates something.
CREATING: dict[tuple[str, str], Setup] = {
    ("incident", "/incidents"): _fixed(
        "/incidents", {"title": "Mail down", "impact": 1, "urgency": 1}
    ),
    ("incident", "/incidents/{incident_id}/work-notes"): _work_note,
    ("incident", "/requests"): _fixed(
        "/requests", {"title": "New laptop", "item": "Laptop", "impact": 2, "urgency": 2}
    ),
    ("incident", "/problems"): _fixed("/problems", {"title": "Slow queries"}),
    ("incident", "/problems/{problem_id}/change-requests"): _change_request,
    ("incident", "/integrations/alertmanager"): _fixed(
        "/integrations/alertmanager",
        {
            "version": "4",
            "status": "firing",
            "receiver": "itsm",
            "groupKey": "g",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "DiskFull", "severity": "critical"},
                    "annotations": {"summary": "disk full"},
                    "startsAt": "2024-05-01T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "f1",
                }
            ],
        },
    ),
    ("incident", "/integrations/events"): _fixed(
        "/integrations/events",
        {
            "event_action": "trigger",
            "payload": {"summary": "queue backlog", "severity": "error", "source": "mq-1"},
        },
    ),
    ("config", "/token-revocations"): _fixed(
        "/token-revocations", {"token_id": str(uuid.uuid4()), "reason": "retired"}
    ),
    ("config", "/cis"): _fixed("/cis", {"class": "server", "name": "web-1", "attributes": SERVER}),
    ("config", "/relationships"): _relationship,
    ("config", "/baselines"): _fixed("/baselines", {"name": "before-upgrade"}),
    # Streamed: it honours the key itself (services/config/application/imports.py).
    ("config", "/imports"): _upload,
    ("change", "/changes"): _fixed("/changes", {"type": "normal", "title": "Add an index"}),
    ("change", "/change-templates"): _fixed(
        "/change-templates",
        {"name": "Restart", "implementation_plan": "restart", "backout_plan": "none"},
    ),
    ("change", "/changes/{change_id}/risk-assessments"): _risk_assessment,
    ("change", "/changes/{change_id}/approvals"): _approval,
    ("change", "/cab-meetings"): _fixed(
        "/cab-meetings", {"starts_at": "2030-01-07T10:00:00Z", "members": ["carl", "cora"]}
    ),
    ("change", "/cab-meetings/{meeting_id}/decisions"): _cab_decision,
    ("change", "/change-windows"): _fixed(
        "/change-windows",
        {
            "name": "Year-end freeze",
            "kind": "blackout",
            "scope": "all",
            "start": "2027-12-20T00:00:00",
            "duration": "P14D",
            "time_zone": "Europe/Berlin",
        },
    ),
    # Creates nothing (a hypothetical window's conflicts), but a retry is answered the same.
    ("change", "/schedule/conflicts"): _fixed(
        "/schedule/conflicts",
        {
            "ci_ids": [str(uuid.uuid4())],
            "start": "2027-12-20T00:00:00Z",
            "end": "2027-12-20T02:00:00Z",
        },
    ),
    ("change", "/schedule/feed-tokens"): _fixed(
        "/schedule/feed-tokens", {"name": "Outlook", "ci": ["db-1"]}
    ),
    ("change", "/deployments"): _fixed(
        "/deployments",
        {
            "pipeline": "walk",
            "environment": "staging",
            "sequence": 1,
            "artifacts": [{"name": "a", "version": "1", "digest": DIGEST}],
        },
    ),
    ("change", "/releases"): _fixed(
        "/releases", {"name": "R1", "artifacts": [{"name": "a", "version": "1", "digest": DIGEST}]}
    ),
    ("change", "/webhooks/{tenant}/github"): _webhook(
        "github",
        GITHUB_RULE,
        lambda raw: {
            "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": "walk-1",
            "X-Hub-Signature-256": _hmac(raw),
        },
    ),
    ("change", "/webhooks/{tenant}/flux"): _webhook(
        "flux", FLUX_EVENT, lambda raw: {"X-Signature": _hmac(raw)}
    ),
    ("change", "/webhooks/{tenant}/argocd"): _webhook(
        "argocd", ARGOCD_SYNC, lambda raw: {"X-Argocd-Signature": WEBHOOK_SECRET}
    ),
    ("reporting", "/report-definitions"): _with_report_readers(
        "/report-definitions", REPORT_DEFINITION
    ),
    ("reporting", "/reports"): _report,
    ("reporting", "/management-reviews"): _with_report_readers(
        "/management-reviews", {"period": "month", "period_start": "2026-11-01"}
    ),
    ("reporting", "/improvement-actions"): _fixed(
        "/improvement-actions", {"title": "Shorten P1 resolution", "owner": "dana"}
    ),
    ("reporting", "/audit-findings"): _fixed("/audit-findings", AUDIT_FINDING),
    ("reporting", "/audit-findings/{finding_id}/improvement-actions"): _finding_action,
    ("incident", "/outages"): _outage,
    ("incident", "/incidents/{incident_id}/outages"): _major_incident_outage,
    ("reporting", "/evidence-exports"): _fixed(
        "/evidence-exports",
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "clauses": ["8.6.1"]},
    ),
}


def test_every_post_of_every_service_is_listed_here():
    """A new POST route fails this test until it is listed and its replay is tested below."""
    posts = {
        (name, route.path)
        for name, definition in DEFINITIONS.items()
        for router in definition.routers
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    }
    assert posts == set(CREATING) | ACTING | PUBLIC_SINGLE_USE


@pytest.mark.parametrize("route", sorted(CREATING), ids="-".join)
async def test_a_creating_post_retried_with_its_key_is_answered_once(
    route, service_client, headers
):
    service, _ = route
    api = await service_client(service)
    path, body, extra = await CREATING[route](api, headers)
    keyed = {**headers, **extra, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    sent: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    first = await api.post(path, headers=keyed, **sent)
    assert 200 <= first.status_code < 300, first.text
    again = await api.post(path, headers=keyed, **sent)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("location") == first.headers.get("location")


async def test_a_retried_post_cis_returns_the_same_ci_and_creates_no_twin(
    service_client, headers, pools, tenant
):
    config = await service_client("config")
    body = {"class": "server", "name": "no-external-id", "attributes": SERVER}
    keyed = {**headers, "Idempotency-Key": "ci-1"}
    first = await config.post("/cis", json=body, headers=keyed)
    again = await config.post("/cis", json=body, headers=keyed)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    count = await fetchval_as(
        pools["config"], tenant, "SELECT count(*) FROM cis WHERE tenant_id = $1", tenant
    )
    assert count == 1


async def test_the_same_key_from_another_caller_gets_a_record_of_its_own(
    service_client, auth, pools, tenant
):
    api = await service_client("incident")
    body = {"title": "Printer jam", "impact": 3, "urgency": 3}
    alice = {**auth(tenant, "agent", subject="alice"), "Idempotency-Key": "shared-key"}
    bob = {**auth(tenant, "agent", subject="bob"), "Idempotency-Key": "shared-key"}
    first = await api.post("/incidents", json=body, headers=alice)
    other = await api.post("/incidents", json=body, headers=bob)
    assert first.status_code == other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert other.json()["created_by"] == "bob"
    assert "idempotent-replayed" not in other.headers
    count = await fetchval_as(
        pools["incident"], tenant, "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
    )
    assert count == 2


async def test_a_refused_post_leaves_its_key_free_for_a_corrected_retry(
    service_client, headers, pools, tenant
):
    config = await service_client("config")
    keyed = {**headers, "Idempotency-Key": "ci-2"}
    refused = await config.post(
        "/cis", json={"class": "server", "name": "x", "attributes": {}}, headers=keyed
    )
    assert refused.status_code == 422
    body = {"class": "server", "name": "x", "attributes": SERVER}
    # The refused request stored nothing, so the key serves a different, corrected request.
    created = await config.post("/cis", json=body, headers=keyed)
    assert created.status_code == 201, created.text
    count = await fetchval_as(
        pools["config"],
        tenant,
        "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1",
        tenant,
    )
    assert count == 1


async def test_every_post_documents_the_idempotency_key_header(service_client):
    for name in ("incident", "config", "change"):
        api = await service_client(name)
        spec = (await api.get("/openapi.json")).json()
        for path, operations in spec["paths"].items():
            post = operations.get("post")
            if post is None:
                continue
            names = [p["name"] for p in post.get("parameters", [])]
            assert "Idempotency-Key" in names, f"{name} POST {path}"


async def test_two_racing_posts_with_one_key_create_one_ci_and_get_the_same_answer(
    service_client, headers, pools, tenant
):
    config = await service_client("config")
    body = {"class": "server", "name": "raced", "attributes": SERVER}
    keyed = {**headers, "Idempotency-Key": "race-1"}
    first, second = await asyncio.gather(
        *(config.post("/cis", json=body, headers=keyed) for _ in range(2))
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    replayed = {r.headers.get("idempotent-replayed") for r in (first, second)}
    assert replayed == {None, "true"}
    count = await fetchval_as(
        pools["config"], tenant, "SELECT count(*) FROM cis WHERE tenant_id = $1", tenant
    )
    assert count == 1
