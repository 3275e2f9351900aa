"""The service catalogue on the real database and broker: calendars, SLA policies, services."""

import uuid

import pytest

from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.support import end_offsets, published_so_far, read_topic

OFFICE = {
    "timezone": "Europe/Berlin",
    "weekly_hours": {
        day: [{"start": "08:00", "end": "18:00"}] for day in ("mon", "tue", "wed", "thu", "fri")
    },
    "holidays": ["2025-12-25", "2025-12-26"],
}
ALWAYS = {
    "timezone": "UTC",
    "weekly_hours": {
        day: [{"start": "00:00", "end": "24:00"}]
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
}
TARGETS = {
    "P1": {"response_minutes": 15, "resolution_minutes": 240},
    "P2": {"response_minutes": 30, "resolution_minutes": 480},
    "P3": {"response_minutes": 120, "resolution_minutes": 1440},
    "P4": {"response_minutes": 480, "resolution_minutes": 4800},
    "P5": {"response_minutes": 1440, "resolution_minutes": 9600},
}


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager", subject="carol")


def events_of(records, tenant, prefix="itsm.config."):
    ours = (r for r in records if dict(r.headers).get("ce_tenantid") == tenant.encode())
    return [e for e in (from_kafka(r.value, r.headers) for r in ours) if e.type.startswith(prefix)]


async def events_after(config, infra, start, tenant, count, prefix="itsm.config."):
    """The tenant's events (of types starting with `prefix`) since `start`, once `count` arrived
    and every event published so far was read."""
    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: len(events_of(rs, tenant, prefix)) >= count,
        to=await published_so_far(
            infra.bootstrap_servers, CONFIG_EVENTS, config.runtime.pool, tenant
        ),
    )
    return events_of(records, tenant, prefix)


async def put_calendar(config, headers, name="office", calendar=OFFICE, expect=None, **extra):
    response = await config.put(
        f"/calendars/{name}",
        json={"description": "Office hours", "calendar": calendar},
        headers={**headers, **extra},
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


def policy_body(**overrides):
    return {"description": "Gold", "calendar": "office", "targets": TARGETS, **overrides}


async def put_policy(config, headers, name="gold", expect=None, if_match=None, **overrides):
    extra = {"If-Match": if_match} if if_match else {}
    response = await config.put(
        f"/sla-policies/{name}", json=policy_body(**overrides), headers={**headers, **extra}
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


async def business_service(config, headers, name="Payments", **attributes):
    body = {
        "class": "business_service",
        "name": name,
        "criticality": 1,
        "attributes": {
            "owner": "payments-team",
            "customer": "Retail",
            "availability_target": 99.9,
            **attributes,
        },
    }
    response = await config.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def error_fields(response):
    return [e["field"] for e in response.json()["errors"]]


async def test_a_calendar_is_201_then_200_with_the_next_version_and_a_stale_write_is_412(
    config, manager
):
    first = await put_calendar(config, manager, expect=201)
    assert (first.headers["etag"], first.json()["version"]) == ('"1"', 1)
    assert first.json()["calendar"]["timezone"] == "Europe/Berlin"
    second = await put_calendar(config, manager, calendar=ALWAYS, expect=200, **{"If-Match": '"1"'})
    assert (second.headers["etag"], second.json()["calendar"]["timezone"]) == ('"2"', "UTC")
    stale = await put_calendar(config, manager, **{"If-Match": '"1"'})
    assert (stale.status_code, stale.headers["etag"]) == (412, '"2"')
    read = await config.get("/calendars/office", headers=manager)
    assert (read.status_code, read.headers["etag"], read.json()["version"]) == (200, '"2"', 2)
    listed = await config.get("/calendars", headers=manager)
    assert [c["name"] for c in listed.json()] == ["office"]


async def test_an_invalid_calendar_is_a_422_naming_the_field(config, manager):
    unknown_zone = await put_calendar(
        config, manager, calendar={**OFFICE, "timezone": "Mars/Olympus"}
    )
    assert unknown_zone.status_code == 422
    assert error_fields(unknown_zone) == ["calendar.timezone"]
    never_open = await put_calendar(
        config, manager, calendar={"timezone": "UTC", "weekly_hours": {}}
    )
    assert never_open.status_code == 422
    assert error_fields(never_open) == ["calendar.weekly_hours"]
    bad_name = await put_calendar(config, manager, name="Office Hours")
    assert bad_name.status_code == 422
    assert (await config.get("/calendars", headers=manager)).json() == []


async def test_each_definition_emits_its_event_with_the_full_definition(
    config, manager, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    await put_calendar(config, manager, expect=201)
    service = await business_service(config, manager)
    await put_policy(
        config,
        manager,
        expect=201,
        services=[service],
        pause_on=["awaiting_customer", "awaiting_vendor"],
        warning_threshold=0.8,
        default=True,
    )

    prefixes = ("itsm.config.calendar", "itsm.config.sla_policy")
    events = await events_after(config, infra, start, tenant, 2, prefix=prefixes)
    calendar, policy = sorted(events, key=lambda e: e.subject)
    assert (calendar.type, calendar.subject, calendar.itsmversion) == (
        "itsm.config.calendar.defined.v1",
        "calendar/office",
        1,
    )
    assert calendar.data["calendar"] == OFFICE
    assert calendar.data["description"] == "Office hours"
    assert (policy.type, policy.subject, policy.itsmversion) == (
        "itsm.config.sla_policy.defined.v1",
        "sla-policy/gold",
        1,
    )
    assert policy.data["calendar_name"] == "office"
    assert policy.data["calendar"] == OFFICE
    assert policy.data["targets"]["P1"] == {"response_seconds": 900, "resolution_seconds": 14400}
    assert policy.data["targets"]["P5"] == {
        "response_seconds": 86400,
        "resolution_seconds": 576000,
    }
    assert policy.data["pause_on"] == ["awaiting_customer", "awaiting_vendor"]
    assert (policy.data["warning_threshold"], policy.data["default"]) == (0.8, True)
    assert policy.data["services"] == [service]
    assert (policy.actor, policy.data["version"]) == ("carol", 1)


async def test_redefining_a_calendar_republishes_every_policy_on_it(config, manager, tenant, infra):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    await put_calendar(config, manager, expect=201)
    await put_calendar(config, manager, name="always", calendar=ALWAYS, expect=201)
    await put_policy(config, manager, "gold", expect=201)
    await put_policy(config, manager, "silver", expect=201)
    await put_policy(config, manager, "bronze", expect=201, calendar="always")

    later = {**OFFICE, "weekly_hours": {"mon": [{"start": "07:00", "end": "19:00"}]}}
    await put_calendar(config, manager, calendar=later, expect=200)

    events = await events_after(config, infra, start, tenant, 8)
    republished = sorted(
        (e for e in events if e.itsmversion == 2), key=lambda e: (e.type, e.subject)
    )
    assert [(e.type, e.subject) for e in republished] == [
        ("itsm.config.calendar.defined.v1", "calendar/office"),
        ("itsm.config.sla_policy.defined.v1", "sla-policy/gold"),
        ("itsm.config.sla_policy.defined.v1", "sla-policy/silver"),
    ]
    assert all(e.data["calendar"] == later for e in republished)
    assert [e.data["version"] for e in republished] == [2, 2, 2]
    assert republished[1].data["targets"]["P2"]["response_seconds"] == 1800
    assert len(events) == 8  # bronze, on another calendar, was not republished
    gold = await config.get("/sla-policies/gold", headers=manager)
    assert (gold.headers["etag"], gold.json()["calendar"]) == ('"2"', "office")
    bronze = await config.get("/sla-policies/bronze", headers=manager)
    assert bronze.json()["version"] == 1


async def test_an_sla_policy_is_201_then_200_and_a_stale_write_is_412(config, manager):
    await put_calendar(config, manager, expect=201)
    created = await put_policy(config, manager, expect=201)
    assert created.headers["etag"] == '"1"'
    body = created.json()
    assert (body["pause_on"], body["warning_threshold"], body["default"]) == (
        ["awaiting_customer"],
        0.75,
        False,
    )
    assert body["targets"] == TARGETS
    redefined = await put_policy(config, manager, expect=200, if_match='"1"', description="Gold+")
    assert (redefined.headers["etag"], redefined.json()["description"]) == ('"2"', "Gold+")
    stale = await put_policy(config, manager, if_match='"1"')
    assert (stale.status_code, stale.headers["etag"]) == (412, '"2"')
    not_yet = await put_policy(config, manager, "platinum", if_match='"1"')
    assert not_yet.status_code == 412
    listed = await config.get("/sla-policies", headers=manager)
    assert [(p["name"], p["version"]) for p in listed.json()] == [("gold", 2)]


async def test_an_invalid_sla_policy_is_a_422_naming_each_field(config, manager):
    await put_calendar(config, manager, expect=201)
    targets = {
        **{p: t for p, t in TARGETS.items() if p != "P5"},
        "P2": {"response_minutes": 600, "resolution_minutes": 480},
        "P3": {"response_minutes": 0, "resolution_minutes": 60},
    }
    response = await put_policy(
        config, manager, targets=targets, pause_on=["lunch"], warning_threshold=1.2
    )
    assert response.status_code == 422
    assert error_fields(response) == [
        "targets.P5",
        "targets.P2.response_minutes",
        "targets.P3.response_minutes",
        "pause_on.0",
        "warning_threshold",
    ]
    unknown_calendar = await put_policy(config, manager, calendar="night_shift")
    assert (unknown_calendar.status_code, error_fields(unknown_calendar)) == (422, ["calendar"])

    service = await business_service(config, manager)
    retired = await business_service(config, manager, name="Legacy")
    await config.patch(
        f"/cis/{retired}", json={"status": "retired"}, headers={**manager, "If-Match": '"1"'}
    )
    server = await config.post(
        "/cis",
        json={
            "class": "server",
            "name": "db-1",
            "attributes": {"hostname": "db-1", "environment": "production"},
        },
        headers=manager,
    )
    services = [service, retired, server.json()["id"], str(uuid.uuid4())]
    refused = await put_policy(config, manager, services=services)
    assert refused.status_code == 422
    assert error_fields(refused) == ["services.1", "services.2", "services.3"]
    assert (await config.get("/sla-policies", headers=manager)).json() == []


async def test_a_service_in_two_policies_is_409_naming_it_and_the_other_policy(config, manager):
    await put_calendar(config, manager, expect=201)
    payments = await business_service(config, manager)
    shop = await business_service(config, manager, name="Shop")
    await put_policy(config, manager, "gold", expect=201, services=[payments])
    response = await put_policy(config, manager, "silver", services=[shop, payments])
    assert response.status_code == 409
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["services.1"]
    assert payments in errors[0]["detail"] and "gold" in errors[0]["detail"]
    # Moving it is fine once the other policy lets go.
    await put_policy(config, manager, "gold", expect=200, services=[])
    await put_policy(config, manager, "silver", expect=201, services=[shop, payments])


async def test_a_second_default_policy_is_409_naming_default_and_the_other_policy(config, manager):
    await put_calendar(config, manager, expect=201)
    await put_policy(config, manager, "gold", expect=201, default=True)
    response = await put_policy(config, manager, "silver", default=True)
    assert response.status_code == 409
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["default"]
    assert "gold" in errors[0]["detail"]
    # Redefining the default itself keeps it the default.
    await put_policy(config, manager, "gold", expect=200, default=True)


async def test_another_tenants_calendar_and_policy_are_404_and_cannot_be_referenced(
    config, manager, auth
):
    other = auth(f"t-{uuid.uuid4().hex[:12]}", "config_manager")
    await put_calendar(config, other, name="theirs", expect=201)
    their_service = await business_service(config, other)
    await put_policy(config, other, "their_gold", expect=201, calendar="theirs")

    assert (await config.get("/calendars/theirs", headers=manager)).status_code == 404
    assert (await config.get("/calendars/theirs/history", headers=manager)).status_code == 404
    assert (await config.get("/sla-policies/their_gold", headers=manager)).status_code == 404
    assert (
        await config.get(f"/business-services/{their_service}", headers=manager)
    ).status_code == 404
    assert (await config.get("/sla-policies", headers=manager)).json() == []

    referencing = await put_policy(config, manager, calendar="theirs")
    assert (referencing.status_code, error_fields(referencing)) == (422, ["calendar"])
    await put_calendar(config, manager, expect=201)
    covering = await put_policy(config, manager, services=[their_service])
    assert (covering.status_code, error_fields(covering)) == (422, ["services.0"])
    # Same names in two tenants are two objects: this tenant's first definition is version 1.
    await put_policy(config, manager, "their_gold", expect=201)


async def test_only_catalogue_roles_define_while_readers_read(config, manager, auth, tenant):
    agent = auth(tenant, "agent")
    assert (await put_calendar(config, agent)).status_code == 403
    await put_calendar(config, manager, expect=201)
    assert (await put_policy(config, agent)).status_code == 403
    assert (await put_policy(config, auth(tenant, "auditor"))).status_code == 403
    await put_policy(config, auth(tenant, "tenant_admin"), expect=201)
    assert (await config.get("/sla-policies/gold", headers=agent)).status_code == 200
    assert (await config.get("/calendars/office", headers=agent)).status_code == 200
    assert (await config.get("/business-services", headers=agent)).status_code == 200
    assert (await config.get("/calendars", headers=auth(tenant, "requester"))).status_code == 403


async def test_history_lists_every_version_with_actor_time_and_definition(
    config, manager, auth, tenant
):
    await put_calendar(config, manager, expect=201)
    await put_policy(config, manager, expect=201)
    await put_policy(config, auth(tenant, "tenant_admin", subject="dana"), expect=200, default=True)
    await put_calendar(config, manager, calendar=ALWAYS, expect=200)
    auditor = auth(tenant, "auditor")

    calendar = await config.get("/calendars/office/history", headers=auditor)
    assert calendar.status_code == 200
    versions = calendar.json()["items"]
    assert [(v["version"], v["actor"]) for v in versions] == [(1, "carol"), (2, "carol")]
    assert versions[0]["definition"] == {"description": "Office hours", "calendar": OFFICE}
    assert versions[1]["definition"]["calendar"]["timezone"] == "UTC"

    policy = await config.get("/sla-policies/gold/history", headers=auditor, params={"limit": 2})
    page = policy.json()
    assert [(v["version"], v["actor"], v["cause"]) for v in page["items"]] == [
        (1, "carol", "defined"),
        (2, "dana", "defined"),
    ]
    assert page["items"][0]["definition"]["targets"] == TARGETS
    assert page["items"][0]["definition"]["default"] is False
    assert page["items"][1]["definition"]["default"] is True
    assert (page["items"][1]["calendar_version"], page["items"][1]["calendar"]) == (1, OFFICE)
    rest = await config.get(
        "/sla-policies/gold/history", headers=auditor, params={"cursor": page["next_cursor"]}
    )
    [republished] = rest.json()["items"]
    assert (republished["version"], republished["cause"]) == (3, "calendar_redefined")
    assert (republished["calendar_version"], republished["calendar"]["timezone"]) == (2, "UTC")
    assert all(v["at"] for v in page["items"] + [republished])
    assert (await config.get("/sla-policies/none/history", headers=auditor)).status_code == 404


async def test_business_services_are_listed_with_owner_customer_target_and_policy(config, manager):
    await put_calendar(config, manager, expect=201)
    payments = await business_service(config, manager, name="Payments")
    shop = await business_service(config, manager, name="Shop", customer="Online")
    archive = await business_service(config, manager, name="Archive")
    await config.patch(
        f"/cis/{archive}", json={"status": "retired"}, headers={**manager, "If-Match": '"1"'}
    )
    await put_policy(config, manager, expect=201, services=[shop])

    first = await config.get("/business-services", headers=manager, params={"limit": 1})
    assert first.status_code == 200
    second = await config.get(
        "/business-services", headers=manager, params={"cursor": first.json()["next_cursor"]}
    )
    listed = first.json()["items"] + second.json()["items"]
    assert second.json()["next_cursor"] is None
    assert listed == [
        {
            "id": payments,
            "name": "Payments",
            "status": "active",
            "criticality": 1,
            "owner": "payments-team",
            "customer": "Retail",
            "availability_target": 99.9,
            "sla_policy": None,
        },
        {
            "id": shop,
            "name": "Shop",
            "status": "active",
            "criticality": 1,
            "owner": "payments-team",
            "customer": "Online",
            "availability_target": 99.9,
            "sla_policy": "gold",
        },
    ]
    with_retired = await config.get(
        "/business-services", headers=manager, params={"include_retired": "true"}
    )
    assert [s["name"] for s in with_retired.json()["items"]] == ["Archive", "Payments", "Shop"]
    one = await config.get(f"/business-services/{shop}", headers=manager)
    assert one.json() == listed[1]
    servers = await config.post(
        "/cis",
        json={
            "class": "server",
            "name": "db-1",
            "attributes": {"hostname": "db-1", "environment": "production"},
        },
        headers=manager,
    )
    not_a_service = await config.get(f"/business-services/{servers.json()['id']}", headers=manager)
    assert not_a_service.status_code == 404


async def test_a_policy_announces_the_services_it_starts_and_stops_covering(
    config, manager, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    await put_calendar(config, manager, expect=201)
    payments = await business_service(config, manager)
    shop = await business_service(config, manager, name="Shop")

    await put_policy(config, manager, expect=201, services=[payments])
    await put_policy(config, manager, expect=200, services=[shop])
    await put_policy(config, manager, expect=200, services=[shop], description="same cover")

    def announced(events, service):
        subject = f"business-service/{service}"
        return sorted((e for e in events if e.subject == subject), key=lambda e: e.itsmversion)

    def covered_then_released(records):
        covers = [e.data["sla_policy"] for e in announced(events_of(records, tenant), payments)]
        return covers[-2:] == ["gold", None]

    end = await published_so_far(
        infra.bootstrap_servers, CONFIG_EVENTS, config.runtime.pool, tenant
    )
    records = await read_topic(infra.bootstrap_servers, start, until=covered_then_released, to=end)
    events = events_of(records, tenant, "itsm.config.business_service")
    # Registration may announce too (sequence 1) once cis.py calls announce_business_service.
    *_, added, removed = announced(events, payments)
    assert added.data["sla_policy"] == "gold"
    assert (added.data["name"], added.data["owner"]) == ("Payments", "payments-team")
    assert (added.data["customer"], added.data["availability_target"]) == ("Retail", 99.9)
    assert removed.data["sla_policy"] is None
    assert removed.itsmversion == added.itsmversion + 1 == removed.data["version"]
    *_, moved = announced(events, shop)
    assert moved.data["sla_policy"] == "gold"
    # Redefining without changing the cover announces nothing more.
    assert [e.data["sla_policy"] for e in announced(events, shop)].count("gold") == 1


async def test_registering_a_business_service_ci_emits_business_service_defined(
    config, manager, tenant, infra
):
    # Needs application/cis.py to call announce_business_service on registration.
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    service = await business_service(config, manager, name="Payments")

    [event] = await events_after(
        config, infra, start, tenant, 1, prefix="itsm.config.business_service"
    )
    assert (event.subject, event.itsmversion) == (f"business-service/{service}", 1)
    assert event.data == {
        "id": service,
        "name": "Payments",
        "status": "active",
        "criticality": 1,
        "owner": "payments-team",
        "customer": "Retail",
        "availability_target": 99.9,
        "sla_policy": None,
        "version": 1,
    }
