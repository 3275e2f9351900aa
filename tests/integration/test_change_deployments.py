"""The deployment gate on the real change service, database and broker: idempotent
announcements, polling an awaiting decision, outcomes, a production deployment with no change
registering one, the CI/CD tools' webhooks with right and wrong signatures, and releases
promoted by digest."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.change.application.uow import ChangeUnitOfWork, store_change, store_new_change
from services.change.domain import change as changes
from services.reporting.domain.clauses import CLAUSES
from shared.context import RequestContext
from shared.events.catalogue import CHANGE_EVENTS
from tests.support import (
    end_offsets,
    eventually,
    fetch_as,
    published_so_far,
    read_topic,
    sample_value,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
SECRET = "a-tenant-secret-of-enough-length"


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def pipeline(auth, tenant):
    return auth(tenant, "integration", subject="ci-bot")


@pytest.fixture
def admin(auth, tenant):
    return auth(tenant, "tenant_admin", subject="ada")


def announcement(**fields):
    return {
        "pipeline": "payroll-deploy",
        "environment": "staging",
        "sequence": 41,
        "services": [],
        "artifacts": [{"name": "payroll", "version": "1.4.2", "digest": DIGEST_A}],
        "commit": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
        **fields,
    }


async def a_change(pools, tenant, *, to=("assess",), start=None, end=None, cis=()):
    """A normal change stored as the change service keeps it, moved through `to`."""
    now = datetime.now(UTC)
    context = RequestContext(tenant, "carol", "")
    async with ChangeUnitOfWork(pools["change"], context) as uow:
        change, events = changes.open_change(
            tenant_id=tenant,
            number=await uow.changes.next_number(),
            type="normal",
            title="Upgrade payroll",
            description="",
            justification="security fix",
            requester="carol",
            actor="carol",
            now=now,
            planned_start=start or now - timedelta(minutes=5),
            planned_end=end or now + timedelta(hours=2),
            affected_cis=tuple(cis),
        )
        await store_new_change(uow, change, events)
        for state in to:
            change = await store_change(
                uow, changes.transition(change, state, actor="carol", now=now), state
            )
    return change


async def ada_decides_approvals(api, admin):
    """The tenant's approval policy: one step, decided by ada (set before a change enters
    authorize, whose round the policy then shapes)."""
    current = await api.get("/approval-policies", headers=admin)
    step = {"name": "technical", "approvers": {"users": ["ada"]}, "deadline": "P1D"}
    saved = await api.put(
        "/approval-policies",
        json={"rows": [{"name": "ada decides", "steps": [step]}]},
        headers={**admin, "If-Match": current.headers["etag"]},
    )
    assert saved.status_code == 200, saved.text


async def approve(api, admin, change_id):
    """Ada approves the change's pending step, which schedules it (the approvals' doing)."""
    decided = await api.post(
        f"/changes/{change_id}/approvals", json={"decision": "approve"}, headers=admin
    )
    assert decided.status_code in (200, 201), decided.text


async def test_an_announcement_retried_returns_the_same_deployment_and_decision(api, pipeline):
    first = await api.post("/deployments", json=announcement(), headers=pipeline)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["decision"] == "allowed" and body["reasons"] == []
    assert first.headers["location"] == body["poll_url"] == f"/deployments/{body['id']}"
    again = await api.post("/deployments", json=announcement(), headers=pipeline)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"] and again.json()["decision"] == "allowed"
    other = await api.post("/deployments", json=announcement(commit="0" * 40), headers=pipeline)
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["errors"][0]["field"] == "sequence"
    polled = await api.get(body["poll_url"], headers=pipeline)
    assert polled.status_code == 200 and polled.json()["id"] == body["id"]


async def test_an_artifact_without_a_sha256_digest_is_refused_naming_it(api, pipeline):
    bad = announcement(artifacts=[{"name": "payroll", "version": "1", "digest": "md5:abc"}])
    response = await api.post("/deployments", json=bad, headers=pipeline)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "artifacts[0].digest"


async def test_a_production_deployment_without_a_change_registers_an_unauthorized_one(
    api, pipeline, pools, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CHANGE_EVENTS)
    before = sample_value(api.runtime.registry, "itsm_change_unauthorized_total")
    response = await api.post(
        "/deployments", json=announcement(environment="production"), headers=pipeline
    )
    assert response.status_code == 201, response.text
    deployment = response.json()
    assert deployment["decision"] == "prevented"
    assert deployment["registered"] == "unauthorized"
    assert "unauthorized" in [r["code"] for r in deployment["reasons"]]
    rows = await fetch_as(
        pools["change"],
        tenant,
        "SELECT origin, state, title FROM changes WHERE id = $1",
        uuid.UUID(deployment["change_id"]),
    )
    assert rows[0]["origin"] == "unauthorized" and rows[0]["state"] == "new"
    assert "payroll-deploy #41 to production" in rows[0]["title"]
    listed = await api.get(f"/changes/{deployment['change_id']}/deployments", headers=pipeline)
    assert [d["id"] for d in listed.json()] == [deployment["id"]]
    assert sample_value(api.runtime.registry, "itsm_change_unauthorized_total") == before + 1
    assert (
        sample_value(
            api.runtime.registry,
            "itsm_change_gate_decisions_total",
            {"result": "prevented", "source": "api"},
        )
        >= 1
    )
    end = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    records = await read_topic(infra.bootstrap_servers, start, to=end)
    decided = [
        json.loads(r.value)
        for r in records
        if dict(r.headers)["ce_type"] == b"itsm.change.gate_decided.v1"
        and r.key == deployment["id"].encode()
    ]
    assert decided and decided[0]["result"] == "prevented"
    assert decided[0]["registered"] == "unauthorized"


async def test_production_environments_are_the_tenants_setting(api, pipeline, admin):
    put = await api.put(
        "/gate-settings",
        json={"production_environments": ["live"], "release_environments": ["test", "live"]},
        headers={**admin, "If-Match": '"0"'},
    )
    assert put.status_code == 200, put.text
    live = await api.post("/deployments", json=announcement(environment="live"), headers=pipeline)
    assert live.json()["registered"] == "unauthorized"
    prod = await api.post(
        "/deployments", json=announcement(environment="production"), headers=pipeline
    )
    assert prod.json()["decision"] == "allowed" and prod.json()["change_id"] is None


GATE_SETTINGS_CHANGED = "itsm.change.gate_settings_changed.v1"
LIVE = {"production_environments": ["live"], "release_environments": ["test", "live"]}


async def test_gate_settings_are_the_defaults_as_version_0_until_a_tenant_saves_its_own(
    api, pipeline
):
    response = await api.get("/gate-settings", headers=pipeline)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"0"'
    assert response.json() == {
        "production_environments": ["production", "prod"],
        "release_environments": ["test", "staging", "production"],
        "version": 0,
    }


async def test_changing_the_gate_settings_needs_if_match_and_a_stale_one_changes_nothing(
    api, admin, pipeline
):
    missing = await api.put("/gate-settings", json=LIVE, headers=admin)
    assert missing.status_code == 428, missing.text
    assert missing.json()["errors"][0]["field"] == "If-Match"
    saved = await api.put("/gate-settings", json=LIVE, headers={**admin, "If-Match": '"0"'})
    assert saved.status_code == 200, saved.text
    assert saved.headers["etag"] == '"1"' and saved.json()["version"] == 1
    stale = await api.put(
        "/gate-settings",
        json={**LIVE, "production_environments": ["prod-eu"]},
        headers={**admin, "If-Match": '"0"'},
    )
    assert stale.status_code == 412, stale.text
    assert stale.headers["etag"] == '"1"'
    read = await api.get("/gate-settings", headers=pipeline)
    assert read.headers["etag"] == '"1"'
    assert read.json() == {**LIVE, "version": 1}
    again = await api.put(
        "/gate-settings",
        json={**LIVE, "production_environments": ["live", "dr"]},
        headers={**admin, "If-Match": read.headers["etag"]},
    )
    assert again.status_code == 200, again.text
    assert again.headers["etag"] == '"2"' and again.json()["version"] == 2


async def test_each_gate_settings_version_is_announced_with_the_settings_and_what_changed(
    api, admin, infra, pools, tenant
):
    start = await end_offsets(infra.bootstrap_servers, CHANGE_EVENTS)
    first = await api.put("/gate-settings", json=LIVE, headers={**admin, "If-Match": '"0"'})
    assert first.status_code == 200, first.text
    second_body = {**LIVE, "production_environments": ["live", "dr"]}
    second = await api.put("/gate-settings", json=second_body, headers={**admin, "If-Match": '"1"'})
    assert second.status_code == 200, second.text
    end = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    records = await read_topic(infra.bootstrap_servers, start, to=end)
    mine = [
        r
        for r in records
        if dict(r.headers)["ce_type"] == GATE_SETTINGS_CHANGED.encode()
        and dict(r.headers)["ce_tenantid"].decode() == tenant
    ]
    assert [r.key for r in mine] == [b"gate-settings", b"gate-settings"]
    assert [dict(r.headers)["ce_itsmversion"] for r in mine] == [b"1", b"2"]
    assert dict(mine[0].headers)["ce_actor"] == b"ada"
    announced = [json.loads(r.value) for r in mine]
    assert announced[0]["settings"] == LIVE and announced[0]["version"] == 1
    assert announced[0]["changes"] == {
        "production_environments": {"from": ["production", "prod"], "to": ["live"]},
        "release_environments": {
            "from": ["test", "staging", "production"],
            "to": LIVE["release_environments"],
        },
    }
    assert announced[1]["settings"] == second_body and announced[1]["version"] == 2
    assert announced[1]["changes"] == {
        "production_environments": {"from": ["live"], "to": ["live", "dr"]}
    }


async def test_the_ledger_records_each_gate_settings_version_as_change_evidence(
    api, admin, service_client, pools, tenant
):
    await service_client("reporting")
    for version in (0, 1):
        environments = ["live"] if version == 0 else ["live", "dr"]
        body = {**LIVE, "production_environments": environments}
        put = await api.put(
            "/gate-settings", json=body, headers={**admin, "If-Match": f'"{version}"'}
        )
        assert put.status_code == 200, put.text
    rows = await eventually(
        lambda: fetch_as(
            pools["reporting"],
            tenant,
            "SELECT subject, version, data FROM ledger WHERE type = $1 ORDER BY position",
            GATE_SETTINGS_CHANGED,
        ),
        lambda rows: len(rows) == 2,
    )
    assert [(r["subject"], r["version"]) for r in rows] == [
        ("gate-settings", 1),
        ("gate-settings", 2),
    ]
    assert rows[1]["data"]["settings"]["production_environments"] == ["live", "dr"]
    filed = [c.clause for c in CLAUSES if c.matches(GATE_SETTINGS_CHANGED)]
    assert filed == ["8.5.1"]


async def test_an_awaiting_deployment_is_allowed_when_polled_after_its_change_is_approved(
    api, pipeline, admin, pools, tenant
):
    await ada_decides_approvals(api, admin)
    change = await a_change(pools, tenant, to=("assess", "authorize"))
    body = announcement(environment="production", change_id=str(change.id))
    response = await api.post("/deployments", json=body, headers=pipeline)
    assert response.json()["decision"] == "awaiting", response.text
    assert [r["code"] for r in response.json()["reasons"]] == ["awaiting_approval"]
    await approve(api, admin, change.id)
    polled = await api.get(response.json()["poll_url"], headers=pipeline)
    assert polled.json()["decision"] == "allowed", polled.text
    assert polled.json()["version"] == 2


async def test_a_deployment_outside_its_changes_window_or_on_other_cis_is_prevented(
    api, pipeline, admin, pools, tenant
):
    now = datetime.now(UTC)
    ci, other = uuid.uuid4(), uuid.uuid4()
    await ada_decides_approvals(api, admin)
    change = await a_change(
        pools,
        tenant,
        to=("assess", "authorize"),
        start=now + timedelta(hours=1),
        end=now + timedelta(hours=2),
        cis=[ci],
    )
    await approve(api, admin, change.id)
    body = announcement(
        environment="production", change_id=str(change.id), ci_ids=[str(ci), str(other)]
    )
    response = await api.post("/deployments", json=body, headers=pipeline)
    found = response.json()
    assert found["decision"] == "prevented"
    codes = {r["code"]: r for r in found["reasons"]}
    assert set(codes) == {"outside_window", "wrong_cis"}
    assert codes["wrong_cis"]["ci_ids"] == [str(other)]
    missing = announcement(sequence=7, change_id=str(uuid.uuid4()))
    gone = await api.post("/deployments", json=missing, headers=pipeline)
    assert gone.json()["decision"] == "prevented"
    assert gone.json()["reasons"][0]["code"] == "change_not_found"


async def test_a_deployments_outcome_is_recorded_once_and_a_rollback_after_it(api, pipeline):
    created = (await api.post("/deployments", json=announcement(), headers=pipeline)).json()
    path = f"/deployments/{created['id']}/status"
    done = await api.post(
        path, json={"status": "succeeded", "log_url": "https://ci.example/run/41"}, headers=pipeline
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    assert done.json()["log_url"] == "https://ci.example/run/41"
    twice = await api.post(path, json={"status": "succeeded"}, headers=pipeline)
    assert twice.status_code == 409 and twice.json()["allowed"] == ["rolled_back"]
    back = await api.post(path, json={"status": "rolled_back"}, headers=pipeline)
    assert back.json()["status"] == "rolled_back"


# --- webhooks -----------------------------------------------------------------------------


def github_rule(deployment_id=1001, environment="staging"):
    return {
        "action": "requested",
        "environment": environment,
        "event": "push",
        "deployment_callback_url": "https://api.github.com/repos/octo-org/payroll/actions/runs/"
        "5512/deployment_protection_rule",
        "deployment": {
            "url": f"https://api.github.com/repos/octo-org/payroll/deployments/{deployment_id}",
            "id": deployment_id,
            "node_id": "DE_kwDOExample",
            "sha": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
            "ref": "main",
            "task": "deploy",
            "payload": {},
            "original_environment": environment,
            "environment": environment,
            "description": None,
            "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "created_at": "2026-12-03T03:00:00Z",
            "updated_at": "2026-12-03T03:00:00Z",
        },
        "repository": {"id": 1296269, "name": "payroll", "full_name": "octo-org/payroll"},
        "installation": {"id": 99},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }


def github_status(deployment_id=1001, state="success", environment="staging"):
    rule = github_rule(deployment_id, environment)
    return {
        "action": "created",
        "deployment_status": {
            "id": 7,
            "state": state,
            "description": "",
            "environment": environment,
            "target_url": "",
            "log_url": "https://github.com/octo-org/payroll/actions/runs/5512",
            "created_at": "2026-12-03T03:05:00Z",
            "updated_at": "2026-12-03T03:05:00Z",
        },
        "deployment": rule["deployment"],
        "repository": rule["repository"],
        "sender": rule["sender"],
    }


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def set_secret(api, admin, tool, **extra):
    response = await api.put(
        f"/integrations/{tool}", json={"secret": SECRET, **extra}, headers=admin
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_tools_secret_is_stored_and_never_shown_back(api, admin, tenant):
    shown = await set_secret(api, admin, "github")
    assert shown["secret_set"] is True and SECRET not in json.dumps(shown)
    assert shown["webhook_path"] == f"/webhooks/{tenant}/github"
    read = await api.get("/integrations/github", headers=admin)
    assert SECRET not in read.text and read.json()["secret_set"] is True
    unset = await api.get("/integrations/flux", headers=admin)
    assert unset.json()["secret_set"] is False


async def test_github_deliveries_are_decided_recorded_and_deduplicated(api, admin, tenant):
    await set_secret(api, admin, "github")
    body = json.dumps(github_rule()).encode()
    headers = {
        "X-GitHub-Event": "deployment_protection_rule",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signed(body),
        "Content-Type": "application/json",
    }
    url = f"/webhooks/{tenant}/github"
    decided = await api.post(url, content=body, headers=headers)
    assert decided.status_code == 200, decided.text
    answer = decided.json()
    assert answer["deployment"]["decision"] == "allowed"
    assert answer["deployment"]["pipeline"] == "github:octo-org/payroll"
    assert answer["deployment"]["sequence"] == 1001
    assert answer["github_review"]["state"] == "approved"
    assert answer["github_review"]["environment_name"] == "staging"
    assert answer["deployment"]["external"]["deployment_callback_url"].endswith(
        "/deployment_protection_rule"
    )
    again = await api.post(url, content=body, headers=headers)
    assert again.json()["replayed"] is True
    assert again.json()["deployment"]["id"] == answer["deployment"]["id"]
    status = json.dumps(github_status()).encode()
    recorded = await api.post(
        url,
        content=status,
        headers={
            **headers,
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signed(status),
        },
    )
    assert recorded.status_code == 200, recorded.text
    deployment = recorded.json()["deployment"]
    assert deployment["id"] == answer["deployment"]["id"]
    assert deployment["status"] == "succeeded"
    assert deployment["log_url"] == "https://github.com/octo-org/payroll/actions/runs/5512"


async def test_a_webhook_with_a_wrong_or_missing_signature_is_401(api, admin, tenant):
    await set_secret(api, admin, "github")
    body = json.dumps(github_rule()).encode()
    url = f"/webhooks/{tenant}/github"
    base = {"X-GitHub-Event": "deployment_protection_rule", "X-GitHub-Delivery": "d-1"}
    for signature in (signed(body, "another-secret-entirely"), signed(body + b" "), None):
        headers = dict(base)
        if signature:
            headers["X-Hub-Signature-256"] = signature
        response = await api.post(url, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # Another tenant's URL with this tenant's signature: that tenant has no secret.
    other = await api.post(
        "/webhooks/t-nobody/github",
        content=body,
        headers={**base, "X-Hub-Signature-256": signed(body)},
    )
    assert other.status_code == 401


async def test_a_github_body_that_is_not_what_github_sends_is_422_naming_the_field(
    api, admin, tenant
):
    await set_secret(api, admin, "github")
    rule = github_rule()
    del rule["deployment"]["id"]
    body = json.dumps(rule).encode()
    response = await api.post(
        f"/webhooks/{tenant}/github",
        content=body,
        headers={
            "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signed(body),
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "deployment.id"


def flux_event(reason="ReconciliationSucceeded", severity="info", environment="production"):
    return {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "flux-system",
            "name": "payroll",
            "uid": "cc4d0095-83f4-4f08-98f2-d2e9f3731fb9",
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "resourceVersion": "56921",
        },
        "severity": severity,
        "timestamp": "2026-12-03T03:10:00Z",
        "message": "Deployment/payroll/payroll configured",
        "reason": reason,
        "metadata": {
            "kustomize.toolkit.fluxcd.io/revision": "main@sha1:"
            + "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
            "environment": environment,
        },
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller-7f5c8d4f5-abcde",
    }


async def test_a_flux_reconciliation_in_production_with_no_change_registers_an_unauthorized_one(
    api, admin, tenant, pools
):
    await set_secret(api, admin, "flux")
    body = json.dumps(flux_event()).encode()
    url = f"/webhooks/{tenant}/flux"
    response = await api.post(url, content=body, headers={"X-Signature": signed(body)})
    assert response.status_code == 200, response.text
    deployment = response.json()["deployment"]
    assert deployment["pipeline"] == "flux:Kustomization/flux-system/payroll"
    assert deployment["status"] == "succeeded" and deployment["registered"] == "unauthorized"
    assert deployment["commit"] == "main@sha1:47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54"
    again = await api.post(url, content=body, headers={"X-Signature": signed(body)})
    assert again.json()["replayed"] is True
    count = await fetch_as(
        pools["change"], tenant, "SELECT count(*) FROM changes WHERE origin = 'unauthorized'"
    )
    assert count[0][0] == 1
    wrong = await api.post(url, content=body, headers={"X-Signature": "sha256=" + "0" * 64})
    assert wrong.status_code == 401
    no_env = json.dumps({**flux_event(), "metadata": {}}).encode()
    refused = await api.post(url, content=no_env, headers={"X-Signature": signed(no_env)})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "metadata.environment"


async def test_an_argocd_sync_is_recorded_with_the_header_the_operator_configured(
    api, admin, tenant
):
    await set_secret(api, admin, "argocd", signature_header="X-Itsm-Token")
    url = f"/webhooks/{tenant}/argocd"
    sync = {
        "app": "payroll",
        "environment": "staging",
        "revision": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
        "phase": "Running",
        "finishedAt": None,
        "changeId": "",
        "images": [f"registry.example/payroll:1.4.2@{DIGEST_A}"],
    }
    running = await api.post(url, json=sync, headers={"X-Itsm-Token": SECRET})
    assert running.status_code == 200, running.text
    first = running.json()["deployment"]
    assert first["status"] == "announced"
    assert first["artifacts"] == [
        {"name": "registry.example/payroll", "version": "1.4.2", "digest": DIGEST_A}
    ]
    done = {**sync, "phase": "Succeeded", "finishedAt": "2026-12-03T03:12:00Z"}
    succeeded = await api.post(url, json=done, headers={"X-Itsm-Token": SECRET})
    assert succeeded.json()["deployment"]["id"] == first["id"]
    assert succeeded.json()["deployment"]["status"] == "succeeded"
    wrong = await api.post(url, json=done, headers={"X-Argocd-Signature": SECRET})
    assert wrong.status_code == 401


# --- releases -----------------------------------------------------------------------------


async def test_a_release_is_promoted_only_with_the_digest_that_succeeded_before(
    api, pipeline, auth, tenant, pools, infra
):
    manager = auth(tenant, "change_manager", subject="mia")
    change = await a_change(pools, tenant)
    created = await api.post(
        "/releases",
        json={
            "name": "Payroll 1.4",
            "change_ids": [str(change.id)],
            "artifacts": [{"name": "payroll", "version": "1.4.2", "digest": DIGEST_A}],
        },
        headers=manager,
    )
    assert created.status_code == 201, created.text
    release = created.json()
    assert release["reference"].startswith("REL")
    # The change names the release that ships it (a new version of the change).
    shipped = await api.get(f"/changes/{change.id}", headers=manager)
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["release_id"] == release["id"]
    assert release["environments"] == ["test", "staging", "production"]

    async def write(path, body, current):
        return await api.post(
            f"/releases/{release['id']}{path}",
            json=body,
            headers={**manager, "If-Match": f'"{current["version"]}"'},
        )

    for state in ("building", "testing"):
        moved = await write("/transitions", {"to": state}, release)
        assert moved.status_code == 200, moved.text
        release = moved.json()
    skipped = await write(
        "/deployments",
        {"environment": "staging", "status": "succeeded", "digests": {"payroll": DIGEST_A}},
        release,
    )
    assert skipped.status_code == 409
    problem = skipped.json()
    assert problem["artifact"] == "payroll" and problem["environment"] == "staging"
    tested = await write(
        "/deployments",
        {
            "environment": "test",
            "status": "succeeded",
            "digests": {"payroll": DIGEST_A},
            "evidence": ["https://ci.example/tests/41"],
        },
        release,
    )
    assert tested.status_code == 200, tested.text
    release = tested.json()
    other = await write(
        "/deployments",
        {"environment": "staging", "status": "succeeded", "digests": {"payroll": DIGEST_B}},
        release,
    )
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "digests.payroll"
    moved = await write("/transitions", {"to": "deploying"}, release)
    release = moved.json()
    # Through the gate: a production deployment of the release before staging is prevented.
    early = announcement(
        environment="production",
        sequence=90,
        change_id=str(change.id),
        release_id=release["id"],
    )
    gated = await api.post("/deployments", json=early, headers=pipeline)
    assert "promotion" in [r["code"] for r in gated.json()["reasons"]]
    staged = announcement(environment="staging", sequence=91, release_id=release["id"])
    deployed = (await api.post("/deployments", json=staged, headers=pipeline)).json()
    assert deployed["decision"] == "allowed", deployed
    await api.post(
        f"/deployments/{deployed['id']}/status", json={"status": "succeeded"}, headers=pipeline
    )
    release = (await api.get(f"/releases/{release['id']}", headers=manager)).json()
    assert [(d["environment"], d["status"]) for d in release["deployments"]] == [
        ("test", "succeeded"),
        ("staging", "succeeded"),
    ]
    assert release["deployments"][1]["deployment_id"] == deployed["id"]
    rollback = await write(
        "/deployments",
        {"environment": "staging", "status": "rolled_back", "digests": {"payroll": DIGEST_A}},
        release,
    )
    assert rollback.status_code == 200
    release = rollback.json()
    evidence = await write(
        "/evidence", {"kind": "acceptance", "ref": "https://uat.example/sign-off/14"}, release
    )
    assert evidence.json()["evidence"][0]["kind"] == "acceptance"
    failed = await write("/transitions", {"to": "rolled_back"}, evidence.json())
    assert failed.status_code == 422 and failed.json()["errors"][0]["field"] == "reason"
    history = await api.get(f"/releases/{release['id']}/history", headers=manager)
    assert len(history.json()) == evidence.json()["version"]


async def test_concurrent_retries_of_one_announcement_make_one_deployment_and_one_change(
    api, pipeline, pools, tenant
):
    body = announcement(environment="production", sequence=77)
    answers = await asyncio.gather(
        *(api.post("/deployments", json=body, headers=pipeline) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({a.json()["change_id"] for a in answers}) == 1
    rows = await fetch_as(
        pools["change"], tenant, "SELECT count(*) FROM changes WHERE origin = 'unauthorized'"
    )
    assert rows[0][0] == 1
