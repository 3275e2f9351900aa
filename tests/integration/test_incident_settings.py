"""A tenant's incident settings over HTTP on the real database and broker: defaults, replacement
with If-Match, validation naming the field, the audit event, and their effect on incidents."""

import json
import uuid

import pytest

from shared.events.catalogue import INCIDENT_EVENTS
from tests.support import end_offsets, read_topic


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def admin(auth, tenant):
    return auth(tenant, "tenant_admin", subject="ada")


def inverted_matrix():
    """A matrix where every impact-1 incident is P1 (allowed: monotone)."""
    cells = []
    for impact in (1, 2, 3):
        for urgency in (1, 2, 3):
            priority = 1 if impact == 1 else impact + urgency - 1
            cells.append({"impact": impact, "urgency": urgency, "priority": priority})
    return {"cells": cells}


async def test_a_tenant_that_never_saved_settings_reads_the_defaults_as_version_0(api, admin):
    response = await api.get("/incident-settings", headers=admin)
    assert response.status_code == 200
    assert response.headers["ETag"] == '"0"'
    body = response.json()
    assert body["version"] == 0
    assert body["auto_close_days"] == 7
    assert body["trend_threshold"] == 3
    assert body["change_window_seconds"] == 86_400
    assert body["alert_mapping"]["auto_resolve"] is False
    assert len(body["priority_matrix"]["cells"]) == 9


async def test_replacing_settings_needs_the_version_read_and_announces_them(
    api, admin, infra, tenant
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    body = {"auto_close_days": 3, "trend_threshold": 5, "alert_mapping": {"auto_resolve": True}}
    missing = await api.put("/incident-settings", json=body, headers=admin)
    assert missing.status_code == 428

    saved = await api.put("/incident-settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert saved.status_code == 200, saved.text
    assert saved.headers["ETag"] == '"1"'
    assert saved.json()["auto_close_days"] == 3
    assert saved.json()["alert_mapping"]["auto_resolve"] is True
    assert saved.json()["trend_window_seconds"] == 86_400  # left out: the default

    stale = await api.put("/incident-settings", json={}, headers={**admin, "If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"1"'
    assert (await api.get("/incident-settings", headers=admin)).json()["trend_threshold"] == 5

    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: any(
            r.key == b"settings" and dict(r.headers)["ce_tenantid"].decode() == tenant for r in rs
        ),
    )
    mine = [
        r
        for r in records
        if r.key == b"settings" and dict(r.headers)["ce_tenantid"].decode() == tenant
    ]
    assert [dict(r.headers)["ce_type"].decode() for r in mine] == [
        "itsm.incident.settings_changed.v1"
    ]
    data = json.loads(mine[0].value)
    assert data["version"] == 1
    assert data["settings"]["auto_close_days"] == 3
    assert dict(mine[0].headers)["ce_actor"].decode() == "ada"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auto_close_days": 0}, "auto_close_days"),
        ({"trend_threshold": 1}, "trend_threshold"),
        ({"alert_mapping": {"ci_match": "external_id"}}, "ci_source"),
        ({"priority_matrix": {"cells": []}}, "priority_matrix"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_settings_are_refused_naming_the_field(api, admin, body, field):
    response = await api.put("/incident-settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(field in f for f in fields), fields
    assert (await api.get("/incident-settings", headers=admin)).json()["version"] == 0


async def test_only_a_tenant_admin_changes_settings(api, auth, tenant):
    agent = auth(tenant, "agent")
    assert (await api.get("/incident-settings", headers=agent)).status_code == 200
    refused = await api.put("/incident-settings", json={}, headers={**agent, "If-Match": '"0"'})
    assert refused.status_code == 403


async def test_the_tenant_priority_matrix_sets_the_priority_of_new_incidents(
    api, admin, auth, tenant
):
    agent = auth(tenant, "agent")
    saved = await api.put(
        "/incident-settings",
        json={"priority_matrix": inverted_matrix()},
        headers={**admin, "If-Match": '"0"'},
    )
    assert saved.status_code == 200, saved.text
    created = await api.post(
        "/incidents", json={"title": "Slow", "impact": 1, "urgency": 3}, headers=agent
    )
    assert created.json()["priority"] == 1


async def test_settings_of_one_tenant_do_not_touch_another(api, admin, auth):
    other = auth(f"t-{uuid.uuid4().hex[:12]}", "tenant_admin")
    await api.put(
        "/incident-settings", json={"auto_close_days": 2}, headers={**admin, "If-Match": '"0"'}
    )
    theirs = (await api.get("/incident-settings", headers=other)).json()
    assert theirs["auto_close_days"] == 7
