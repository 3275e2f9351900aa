"""Calendar feed tokens on the real broker and database: a token's secret URL serves the
schedule's iCalendar feed without any header, with the token's filters; a wrong secret, another
tenant's path or a revoked token is 404; the secret is in no list and no event; owners and
change managers revoke."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from shared.events.catalogue import CHANGE_EVENTS
from tests.integration.test_change_schedule import ids, new_change, published, seed_cmdb
from tests.support import fetch_as, published_so_far, read_topic, sample_value

FEEDS = "itsm_change_schedule_feed_requests_total"
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def requester(auth, tenant):
    return auth(tenant, "requester", subject="rita")


@pytest.fixture
def other_user(auth, tenant):
    return auth(tenant, "requester", subject="olga")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "change_manager", subject="mia")


async def create(api, headers, **body) -> dict:
    made = await api.post("/schedule/feed-tokens", json=body, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()


def uids(feed_text: str) -> set[str]:
    parsed = icalendar.Calendar.from_ical(feed_text)
    return {str(e["UID"]).split("@")[0] for e in parsed.walk("VEVENT")}


async def test_a_calendar_client_subscribes_with_the_secret_url_and_no_header(
    api, requester, tenant, pools
):
    cis = ids(2)
    await seed_cmdb(pools["change"], tenant, cis)
    first = await new_change(pools["change"], tenant, [cis[0]], SOON, title="Patch db")
    second = await new_change(pools["change"], tenant, [cis[1]], SOON, title="Patch app")
    everything = await create(api, requester, name="Google Calendar")
    assert everything["url"].startswith(f"/feeds/{tenant}/schedule/")
    assert everything["user_id"] == "rita" and everything["last_used_at"] is None
    served_before = sample_value(api.runtime.registry, FEEDS, {"result": "served"})

    feed = await api.get(everything["url"])  # no Authorization, no X-Tenant-Id
    assert feed.status_code == 200, feed.text
    assert feed.headers["content-type"].startswith("text/calendar")
    assert uids(feed.text) == {str(first.id), str(second.id)}
    # What the bearer-token feed serves for the same period and filters.
    bearer = await api.get("/schedule.ics", headers=requester)
    assert uids(bearer.text) == uids(feed.text)
    after = sample_value(api.runtime.registry, FEEDS, {"result": "served"})
    assert after == served_before + 1

    filtered = await create(api, requester, name="Outlook", ci=[cis[0]])
    assert filtered["ci"] == [cis[0]]
    assert uids((await api.get(filtered["url"])).text) == {str(first.id)}

    listed = (await api.get("/schedule/feed-tokens", headers=requester)).json()["items"]
    assert [t["id"] for t in listed] == [filtered["id"], everything["id"]]
    used = next(t for t in listed if t["id"] == everything["id"])
    assert used["last_used_at"] is not None


async def test_a_wrong_secret_another_tenants_path_and_a_revoked_token_are_404(
    api, requester, auth, tenant, pools
):
    made = await create(api, requester)
    secret = made["url"].split("/")[-1].removesuffix(".ics")
    refused_before = sample_value(api.runtime.registry, FEEDS, {"result": "refused"})
    wrong = "A" * 43
    answers = [
        await api.get(f"/feeds/{tenant}/schedule/{wrong}.ics"),
        await api.get(f"/feeds/{tenant}/schedule/not-a-secret.ics"),
        await api.get(f"/feeds/{tenant}-x/schedule/{secret}.ics"),
        await api.get(f"/feeds/{tenant}/schedule/{secret}.ics", headers=auth(tenant, "auditor")),
    ]
    assert [a.status_code for a in answers[:3]] == [404, 404, 404]
    assert answers[3].status_code == 200  # a bearer token neither helps nor hinders
    details = {a.json()["detail"] for a in answers[:3]}
    assert len(details) == 1 and all(
        a.headers["content-type"] == "application/problem+json" for a in answers[:3]
    )
    refused = sample_value(api.runtime.registry, FEEDS, {"result": "refused"})
    assert refused == refused_before + 3

    revoked = await api.delete(f"/schedule/feed-tokens/{made['id']}", headers=requester)
    assert revoked.status_code == 204
    gone = await api.get(made["url"])
    assert gone.status_code == 404 and gone.json()["detail"] in details
    assert (await api.get("/schedule/feed-tokens", headers=requester)).json()["items"] == []
    again = await api.delete(f"/schedule/feed-tokens/{made['id']}", headers=requester)
    assert again.status_code == 204


async def test_the_secret_is_in_no_list_no_row_and_no_event(api, requester, tenant, pools, infra):
    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    made = await create(api, requester, name="Apple Calendar", service="payroll")
    secret = made["url"].split("/")[-1].removesuffix(".ics")
    assert (await api.get(made["url"])).status_code == 200
    assert (await api.delete(f"/schedule/feed-tokens/{made['id']}", headers=requester)).is_success

    listed = await api.get("/schedule/feed-tokens", headers=requester)
    assert secret not in listed.text
    rows = await fetch_as(
        pools["change"],
        tenant,
        "SELECT * FROM schedule_feed_tokens WHERE tenant_id = $1",
        tenant,
    )
    [row] = rows
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in repr(dict(row))

    found = await published(infra, pools, tenant, start, made["id"])
    assert [kind for kind, _ in found] == [
        "itsm.change.schedule_feed_token_created.v1",
        "itsm.change.schedule_feed_token_revoked.v1",
    ]
    assert found[0][1]["service"] == "payroll" and found[1][1]["revoked_by"] == "rita"
    end = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    for record in await read_topic(infra.bootstrap_servers, start, to=end):
        assert secret.encode() not in (record.value or b"")
        assert all(secret.encode() not in (v or b"") for _, v in record.headers)


async def test_owners_revoke_their_own_and_change_managers_any_of_the_tenant(
    api, requester, other_user, manager, auth, tenant
):
    ritas = await create(api, requester, name="rita's")
    olgas = await create(api, other_user, name="olga's")
    mine = (await api.get("/schedule/feed-tokens", headers=requester)).json()["items"]
    assert [t["id"] for t in mine] == [ritas["id"]]

    # Another user's token is not there for a requester, as a missing one is not.
    refused = await api.delete(f"/schedule/feed-tokens/{olgas['id']}", headers=requester)
    assert refused.status_code == 404
    assert (await api.get(olgas["url"])).status_code == 200
    # Nor for anyone of another tenant, change manager or not.
    foreign = auth(f"{tenant}-x", "change_manager", subject="mia")
    stranger = await api.delete(f"/schedule/feed-tokens/{olgas['id']}", headers=foreign)
    assert stranger.status_code == 404

    revoked = await api.delete(f"/schedule/feed-tokens/{olgas['id']}", headers=manager)
    assert revoked.status_code == 204
    assert (await api.get(olgas["url"])).status_code == 404
    assert (await api.get(ritas["url"])).status_code == 200
