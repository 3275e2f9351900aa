"""Risk of a change on the real database: factors from the CMDB projection and the change
history, the tenant's versioned rule set, a recorded assessment that sets the change's risk
level, an override that needs a reason, and a replay of every recorded assessment that gives
the same decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.change.application import risk
from services.change.application.reactions import unit_of_work
from services.change.application.uow import store_change
from services.change.domain.change import transition
from tests.integration.cab_support import context, move, new_change, read_change, seed_graph


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def pool(api):
    return api.runtime.pool


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "change_manager", subject="mia")


async def assess(api, headers, change_id, **body):
    return await api.post(f"/changes/{change_id}/risk-assessments", json=body, headers=headers)


async def test_an_assessment_explains_each_factor_and_sets_the_changes_risk_level(
    api, pool, manager, tenant
):
    ids = await seed_graph(pool, tenant)
    start = datetime.now(UTC) + timedelta(hours=36)
    change = await new_change(
        pool,
        tenant,
        affected_cis=(uuid.UUID(ids["db"]),),
        planned_start=start,
        planned_end=start + timedelta(hours=2),
    )
    # An earlier change on the same CI that was rolled back.
    earlier = await new_change(pool, tenant, affected_cis=(uuid.UUID(ids["db"]),))
    await move(pool, tenant, earlier.id, "assess")
    async with unit_of_work(pool, context(tenant)) as uow:
        done = await uow.changes.get(earlier.id, lock=True)
        assert done is not None
        for state in ("authorize", "scheduled", "implement"):
            done = await store_change(
                uow, transition(done, state, actor="mia", now=datetime.now(UTC)), "moved"
            )
        await store_change(
            uow,
            transition(done, "review", actor="mia", now=datetime.now(UTC), outcome="rolled_back"),
            "moved",
        )

    answer = await assess(api, manager, change.id)
    assert answer.status_code == 201, answer.text
    assessed = answer.json()
    factors = {f["name"]: f for f in assessed["factors"]}
    # db, and app and web that depend on it (two hops up); Payroll of criticality 1.
    assert factors["blast_radius"]["input"]["cis_reached"] == 3
    assert factors["blast_radius"]["input"]["services"] == [
        {"id": ids["payroll"], "criticality": 1}
    ]
    assert factors["blast_radius"]["contribution"] == 3 * 1.0 + 4 * 2.0
    assert factors["failure_rate"]["input"] == {"implemented": 1, "failed": 1, "rate": 1.0}
    assert factors["failure_rate"]["contribution"] == 25.0
    assert factors["maintenance_window"]["contribution"] == 0
    assert "unknown" in factors["maintenance_window"]["explanation"]
    assert factors["backout_tested"]["contribution"] == 10.0
    assert 4.9 <= factors["lead_time"]["contribution"] <= 5.1
    assert assessed["score"] == pytest.approx(sum(f["contribution"] for f in factors.values()))
    assert assessed["rule_set_version"] == 0
    assert assessed["level"] == assessed["computed_level"] == "medium"

    stored = await read_change(pool, tenant, change.id)
    assert stored.risk_level == "medium"
    assert stored.version == assessed["change_version"] == change.version + 1
    latest = await api.get(f"/changes/{change.id}/risk-assessments/latest", headers=manager)
    assert latest.json()["id"] == assessed["id"]


async def test_overriding_the_level_needs_a_reason(api, pool, manager, tenant):
    change = await new_change(pool, tenant)
    refused = await assess(api, manager, change.id, level="high")
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["reason"]
    overridden = await assess(api, manager, change.id, level="high", reason="vendor advisory")
    assert overridden.status_code == 201, overridden.text
    body = overridden.json()
    assert (body["level"], body["override_reason"]) == ("high", "vendor advisory")
    assert (await read_change(pool, tenant, change.id)).risk_level == "high"


async def test_the_risk_rule_set_is_versioned_and_each_assessment_names_its_version(
    api, pool, manager, auth, tenant
):
    admin = auth(tenant, "tenant_admin", subject="ada")
    current = await api.get("/risk-settings", headers=admin)
    assert (current.status_code, current.headers["etag"]) == (200, '"0"')
    body = {"thresholds": {"medium": 5, "high": 10}, "blast_radius_hops": 1}
    missing = await api.put("/risk-settings", json=body, headers=admin)
    assert missing.status_code == 428
    saved = await api.put("/risk-settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1
    stale = await api.put("/risk-settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert stale.status_code == 412
    wrong = await api.put(
        "/risk-settings",
        json={"thresholds": {"medium": 50, "high": 10}},
        headers={**admin, "If-Match": '"1"'},
    )
    assert wrong.status_code == 422

    change = await new_change(pool, tenant)
    assessed = (await assess(api, manager, change.id)).json()
    assert assessed["rule_set_version"] == 1
    assert assessed["level"] == "high"


async def test_a_change_past_scheduling_is_not_assessed_and_an_unknown_one_is_404(
    api, pool, manager, tenant
):
    change = await new_change(pool, tenant)
    await move(pool, tenant, change.id, "cancelled")
    assert (await assess(api, manager, change.id)).status_code == 409
    assert (await assess(api, manager, uuid.uuid4())).status_code == 404


async def test_replaying_every_recorded_assessment_reproduces_its_decision(
    api, pool, manager, auth, tenant
):
    ids = await seed_graph(pool, tenant)
    admin = auth(tenant, "tenant_admin", subject="ada")
    changes = [
        await new_change(pool, tenant, affected_cis=(uuid.UUID(ids[name]),))
        for name in ("db", "app", "web")
    ]
    for change in changes:
        assert (await assess(api, manager, change.id)).status_code == 201
    # A new rule set: assessments under both versions are recorded.
    saved = await api.put(
        "/risk-settings",
        json={"weights": {"per_ci": 7.5, "backout_untested": 40}},
        headers={**admin, "If-Match": '"0"'},
    )
    assert saved.status_code == 200, saved.text
    for change in changes:
        assert (await assess(api, manager, change.id)).status_code == 201

    replayed = 0
    async with unit_of_work(pool, context(tenant)) as uow:
        for change in changes:
            for recorded in await uow.cab.assessments(change.id):
                again = await risk.replay(uow, recorded)
                assert again.score == recorded.score
                assert again.level == recorded.computed_level
                assert [f.as_json() for f in again.factors] == recorded.factors
                replayed += 1
    assert replayed == 6
