"""Baselines on the real database and broker: counts, events, diffs between instants, errors."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.support import clock_passes, end_offsets, fetch_as, read_topic

ATTRIBUTES = {
    "server": {"hostname": "srv", "environment": "production"},
    "application": {"environment": "production"},
}


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager", subject="carol")


async def ci(config, headers, name, ci_class="server", **fields):
    body = {"class": ci_class, "name": name, "attributes": ATTRIBUTES[ci_class], **fields}
    response = await config.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def patch(config, headers, ci_id, **changes):
    current = await config.get(f"/cis/{ci_id}", headers=headers)
    response = await config.patch(
        f"/cis/{ci_id}", json=changes, headers={**headers, "If-Match": current.headers["etag"]}
    )
    assert response.status_code == 200, response.text


async def relate(config, headers, source, target, type_="depends_on"):
    response = await config.post(
        "/relationships",
        json={"type": type_, "source_id": source, "target_id": target},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def unrelate(config, headers, relationship_id):
    response = await config.delete(f"/relationships/{relationship_id}", headers=headers)
    assert response.status_code == 200, response.text


async def baseline(config, headers, name, **body):
    response = await config.post("/baselines", json={"name": name, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def stored_at(config, headers, ci_id) -> datetime:
    """The instant a CI's current version was stored at (what happens next is stamped later)."""
    response = await config.get(f"/cis/{ci_id}", headers=headers)
    assert response.status_code == 200, response.text
    at = datetime.fromisoformat(response.json()["updated_at"])
    await clock_passes(at)
    return at


async def diff(config, headers, name, **params):
    response = await config.get(f"/baselines/{name}/diff", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def by_id(items):
    return {item["id"]: item for item in items}


async def test_a_baseline_counts_live_cis_and_relationships_and_announces_itself(
    config, manager, tenant, infra
):
    app = await ci(config, manager, "payroll-app", "application")
    host = await ci(config, manager, "host-1")
    old = await ci(config, manager, "host-0")
    await relate(config, manager, app, host)
    gone = await relate(config, manager, app, old)
    await unrelate(config, manager, gone)
    await patch(config, manager, old, status="retired")
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)

    created = await config.post(
        "/baselines", json={"name": "go-live", "description": "before cut-over"}, headers=manager
    )

    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/baselines/go-live"
    body = created.json()
    assert (body["cis"], body["relationships"], body["created_by"]) == (2, 1, "carol")
    assert body["description"] == "before cut-over"
    read = await config.get("/baselines/go-live", headers=manager)
    assert read.json() == body

    def announced(records):
        return [
            e
            for e in (from_kafka(r.value, r.headers) for r in records)
            if e.tenantid == tenant and e.type == "itsm.config.baseline.created.v1"
        ]

    records = await read_topic(infra.bootstrap_servers, start, until=lambda rs: announced(rs))
    [event] = announced(records)
    assert (event.subject, event.itsmversion, event.actor) == ("baseline/go-live", 1, "carol")
    assert event.data["cis"] == 2
    assert event.data["relationships"] == 1
    assert datetime.fromisoformat(event.data["at"]) == datetime.fromisoformat(body["at"])


async def test_a_baseline_at_a_past_instant_reflects_that_time(config, manager):
    first = await ci(config, manager, "host-1", owner_team="platform")
    then = await stored_at(config, manager, first)
    second = await ci(config, manager, "host-2")
    await patch(config, manager, first, owner_team="dba", criticality=1)
    await relate(config, manager, first, second)

    past = await baseline(config, manager, "past", at=then.isoformat())

    assert datetime.fromisoformat(past["at"]) == then
    assert (past["cis"], past["relationships"]) == (1, 0)
    changes = await diff(config, manager, "past")
    assert changes["from"]["name"] == "past"
    assert changes["to"]["name"] == "now"
    assert changes["summary"] == {
        "cis": {"added": 1, "removed": 0, "changed": 1},
        "relationships": {"added": 1, "removed": 0},
    }
    cis = by_id(changes["cis"])
    assert cis[second]["change"] == "added"
    assert cis[second]["from"] is None
    assert cis[first]["fields"] == {
        "owner_team": {"from": "platform", "to": "dba"},
        "criticality": {"from": 3, "to": 1},
    }
    assert cis[first]["from"]["version"] == 1
    assert cis[first]["to"]["version"] == 2


async def test_a_diff_against_now_lists_added_removed_and_changed_cis_field_by_field(
    config, manager
):
    app = await ci(config, manager, "app", "application")
    kept = await ci(config, manager, "kept", attributes={**ATTRIBUTES["server"], "os": "Debian"})
    retired = await ci(config, manager, "retired-later")
    flapping = await ci(config, manager, "flapping")
    untouched = await ci(config, manager, "untouched")
    removed_link = await relate(config, manager, app, kept)
    kept_link = await relate(config, manager, app, untouched)
    before = await baseline(config, manager, "before")

    added = await ci(config, manager, "added", "application")
    await patch(
        config,
        manager,
        kept,
        name="kept-renamed",
        attributes={"hostname": "srv", "environment": "staging", "cpu_cores": 8},
        external_ids={"vcenter": "vm-7"},
        controlled=True,
    )
    await patch(config, manager, retired, status="retired")
    await patch(config, manager, flapping, owner_team="night-shift")
    await patch(config, manager, flapping, owner_team=None)  # back as it was
    await unrelate(config, manager, removed_link)
    added_link = await relate(config, manager, added, app, "provides")
    born_and_gone = await ci(config, manager, "born-and-gone")
    await patch(config, manager, born_and_gone, status="retired")

    changes = await diff(config, manager, "before", against="now")

    assert changes["from"] == {"name": "before", "at": before["at"]}
    assert changes["summary"] == {
        "cis": {"added": 1, "removed": 1, "changed": 1},
        "relationships": {"added": 1, "removed": 1},
    }
    cis = by_id(changes["cis"])
    assert set(cis) == {added, retired, kept}
    assert [c["id"] for c in changes["cis"]] == sorted(cis, key=uuid.UUID)
    assert (cis[added]["change"], cis[added]["name"], cis[added]["class"]) == (
        "added",
        "added",
        "application",
    )
    assert cis[retired]["change"] == "removed"
    assert cis[retired]["to"]["status"] == "retired"
    assert cis[kept]["change"] == "changed"
    assert cis[kept]["name"] == "kept-renamed"
    assert cis[kept]["fields"] == {
        "name": {"from": "kept", "to": "kept-renamed"},
        "external_ids": {"from": {}, "to": {"vcenter": "vm-7"}},
        "controlled": {"from": False, "to": True},
        "attributes.environment": {"from": "production", "to": "staging"},
        "attributes.os": {"from": "Debian", "to": None},
        "attributes.cpu_cores": {"from": None, "to": 8},
    }
    relationships = by_id(changes["relationships"])
    assert set(relationships) == {removed_link, added_link}
    assert kept_link not in relationships
    assert relationships[removed_link]["change"] == "removed"
    assert relationships[added_link]["change"] == "added"
    assert relationships[added_link]["type"] == "provides"
    assert (relationships[added_link]["source_id"], relationships[added_link]["target_id"]) == (
        added,
        app,
    )
    assert changes["next_cursor"] is None


async def test_a_diff_against_another_baseline_runs_from_the_earlier_to_the_later(config, manager):
    host = await ci(config, manager, "host")
    first = await baseline(config, manager, "first")
    added = await ci(config, manager, "added")
    await patch(config, manager, host, criticality=1)
    second = await baseline(config, manager, "second")
    await ci(config, manager, "after-the-second")
    await patch(config, manager, host, criticality=4)

    forward = await diff(config, manager, "first", against="second")
    backward = await diff(config, manager, "second", against="first")

    assert forward["from"] == backward["from"] == {"name": "first", "at": first["at"]}
    assert forward["to"] == backward["to"] == {"name": "second", "at": second["at"]}
    assert forward == backward
    assert forward["summary"]["cis"] == {"added": 1, "removed": 0, "changed": 1}
    cis = by_id(forward["cis"])
    assert set(cis) == {added, host}
    assert cis[host]["fields"] == {"criticality": {"from": 3, "to": 1}}
    same = await diff(config, manager, "first", against="first")
    assert same["summary"]["cis"] == {"added": 0, "removed": 0, "changed": 0}
    assert same["cis"] == same["relationships"] == []


async def test_diff_pages_walk_every_ci_then_every_relationship_once_at_one_instant(
    config, manager
):
    hub = await ci(config, manager, "hub")
    await baseline(config, manager, "empty-ish")
    spokes = [await ci(config, manager, f"spoke-{i}") for i in range(4)]
    links = [await relate(config, manager, s, hub) for s in spokes[:3]]

    cis: list[str] = []
    relationships: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await diff(config, manager, "empty-ish", **params)
        assert len(page["cis"]) + len(page["relationships"]) <= 2
        assert page["summary"]["cis"]["added"] == 4
        assert page["summary"]["relationships"]["added"] == 3
        cis += [c["id"] for c in page["cis"]]
        relationships += [r["id"] for r in page["relationships"]]
        pages += 1
        if pages == 1:  # later pages still compare with `now` as the first page saw it
            await ci(config, manager, "added-while-paging")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert cis == sorted(spokes, key=uuid.UUID)
    assert relationships == sorted(links, key=uuid.UUID)


async def test_baselines_are_listed_by_instant_a_page_at_a_time(config, manager):
    now = datetime.now(UTC)
    for name, minutes_ago in (("c", 1), ("a", 3), ("b", 2)):
        await baseline(config, manager, name, at=(now - timedelta(minutes=minutes_ago)).isoformat())
    first = (await config.get("/baselines", params={"limit": 2}, headers=manager)).json()
    rest = (
        await config.get(
            "/baselines", params={"limit": 2, "cursor": first["next_cursor"]}, headers=manager
        )
    ).json()
    assert [b["name"] for b in first["items"]] == ["a", "b"]
    assert [b["name"] for b in rest["items"]] == ["c"]
    assert rest["next_cursor"] is None


async def test_a_baseline_name_is_unique_in_the_tenant(config, manager, auth):
    await baseline(config, manager, "release-1.0")
    again = await config.post("/baselines", json={"name": "release-1.0"}, headers=manager)
    assert again.status_code == 409
    assert [e["field"] for e in again.json()["errors"]] == ["name"]
    elsewhere = auth(f"t-{uuid.uuid4().hex[:12]}", "config_manager")
    other_tenant = await config.post("/baselines", json={"name": "release-1.0"}, headers=elsewhere)
    assert other_tenant.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "future", "at": "2999-01-01T00:00:00Z"}, "at"),
        ({"name": "naive", "at": "2020-01-01T00:00:00"}, "at"),
        ({"name": "now"}, "name"),
        ({"name": "has/slash"}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_an_unacceptable_baseline_is_a_422_naming_the_field(config, manager, body, field):
    response = await config.post("/baselines", json=body, headers=manager)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_an_unknown_baseline_or_comparison_is_a_404_naming_it(config, manager):
    await baseline(config, manager, "known")
    missing = await config.get("/baselines/unknown", headers=manager)
    assert missing.status_code == 404
    assert "unknown" in missing.json()["detail"]
    no_base = await config.get("/baselines/unknown/diff", headers=manager)
    assert no_base.status_code == 404
    assert "unknown" in no_base.json()["detail"]
    no_other = await config.get("/baselines/known/diff?against=nowhere", headers=manager)
    assert no_other.status_code == 404
    assert "nowhere" in no_other.json()["detail"]


async def test_another_tenants_baseline_reads_as_not_found(config, manager, auth):
    await baseline(config, manager, "mine")
    stranger = auth(f"t-{uuid.uuid4().hex[:12]}", "config_manager")
    assert (await config.get("/baselines/mine", headers=stranger)).status_code == 404
    assert (await config.get("/baselines/mine/diff", headers=stranger)).status_code == 404
    assert (await config.get("/baselines", headers=stranger)).json()["items"] == []


async def test_an_agent_reads_baselines_but_cannot_create_one(config, manager, auth, tenant):
    agent = auth(tenant, "agent")
    refused = await config.post("/baselines", json={"name": "by-agent"}, headers=agent)
    assert refused.status_code == 403
    await baseline(config, manager, "by-manager")
    assert (await config.get("/baselines/by-manager", headers=agent)).status_code == 200
    assert (await config.get("/baselines/by-manager/diff", headers=agent)).status_code == 200


async def test_a_baseline_cannot_be_changed_even_in_the_database(config, manager, tenant):
    await baseline(config, manager, "fixed")
    assert (await config.delete("/baselines/fixed", headers=manager)).status_code == 405
    with pytest.raises(asyncpg.PostgresError, match="immutable"):
        await fetch_as(
            config.runtime.pool, tenant, "UPDATE baselines SET cis = 99 WHERE name = 'fixed'"
        )
