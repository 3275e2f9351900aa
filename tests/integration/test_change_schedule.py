"""The change schedule on the real broker and database: windows over HTTP (ETag, If-Match,
events), a change's conflicts across the CMDB graph (every CI a blackout hits, neighbours within
the hops, the implementer, per-CI maintenance windows, open major incidents), the event only when
they differ, the blackout guard and its override, the schedule and its iCalendar feed, the next
free slot, roles and tenants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import icalendar
import pytest
from aiokafka import AIOKafkaProducer

from services.change.application import schedule as use_cases
from services.change.application.uow import ChangeUnitOfWork, store_new_change
from services.change.domain.change import Change, open_change
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import Conflict
from shared.events.catalogue import CHANGE_EVENTS, CONFIG_EVENTS, CalendarDefinedV1, CalendarV1
from shared.events.envelope import new_envelope
from tests.support import (
    eventually,
    header,
    published_so_far,
    read_topic,
    sample_value,
    send_event,
)

DAY = datetime(2027, 3, 1, tzinfo=UTC)  # a Monday, far from any real "now"
CONFLICTS = "itsm_change_conflicts_found_total"


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "change_manager", subject="mia")


@pytest.fixture
def requester(auth, tenant):
    return auth(tenant, "requester", subject="rita")


async def seed_cmdb(
    pool,
    tenant: str,
    cis: Sequence[str],
    *,
    depends: Sequence[tuple[str, str]] = (),
    services: dict[str, Sequence[str]] | None = None,
) -> None:
    """CIs, `dependent depends_on dependency` relationships and the services CIs support, as
    the CMDB projection keeps them (bulk rows: the consumer's own tests cover the events)."""
    now = datetime.now(UTC)
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO cmdb_cis (tenant_id, id, ci_class, name, status, owner_team,"
            " criticality, version, updated_at)"
            " SELECT $1, id, 'server', id, 'active', NULL, 3, 1, $3 FROM unnest($2::text[]) id",
            tenant,
            list(cis),
            now,
        )
        await conn.execute(
            "INSERT INTO cmdb_relationships (tenant_id, id, type, source_id, target_id, removed,"
            " version) SELECT $1, gen_random_uuid()::text, 'depends_on', s, t, false, 1"
            " FROM unnest($2::text[], $3::text[]) AS r(s, t)",
            tenant,
            [s for s, _ in depends],
            [t for _, t in depends],
        )
        for ci, supported in (services or {}).items():
            await conn.execute(
                "INSERT INTO cmdb_ci_services (tenant_id, ci_id, services, sequence)"
                " VALUES ($1, $2, $3, 1)",
                tenant,
                ci,
                list(supported),
            )
            for service in supported:
                await conn.execute(
                    "INSERT INTO cmdb_business_services (tenant_id, id, name, status,"
                    " criticality, version) VALUES ($1, $2, $2, 'active', 1, 1)"
                    " ON CONFLICT DO NOTHING",
                    tenant,
                    service,
                )


async def new_change(
    pool,
    tenant: str,
    cis: Sequence[str],
    start: datetime,
    hours: float = 2,
    *,
    implementer: str | None = None,
    title: str = "Patch",
) -> Change:
    """A change with a planned window (as the change use cases store one)."""
    async with ChangeUnitOfWork(pool, RequestContext(tenant, "rita", "")) as uow:
        change, events = open_change(
            tenant_id=tenant,
            number=await uow.changes.next_number(),
            type="normal",
            title=title,
            description="",
            justification="",
            requester="rita",
            actor="rita",
            now=datetime.now(UTC),
            affected_cis=tuple(uuid.UUID(ci) for ci in cis),
            planned_start=start,
            planned_end=start + timedelta(hours=hours),
            implementer=implementer,
        )
        await store_new_change(uow, change, events)
        await uow.commit()
    return change


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def window_body(**fields) -> dict:
    return {
        "name": "Year-end freeze",
        "kind": "blackout",
        "scope": "all",
        "start": "2027-03-01T00:00:00",
        "duration": "P7D",
        "time_zone": "Europe/Berlin",
        **fields,
    }


async def published(infra, pools, tenant, start, subject: str) -> list[tuple[str, dict]]:
    """(type, data) of the events about a subject published since `start`, in order."""
    end = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    return [
        (header(r, "ce_type") or "", json.loads(r.value))
        for r in await read_topic(infra.bootstrap_servers, start, to=end)
        if header(r, "ce_subject") == subject and header(r, "ce_tenantid") == tenant
    ]


async def conflict_events(infra, pools, tenant, start, change_id: str) -> list[dict]:
    found = await published(infra, pools, tenant, start, change_id)
    return [data for kind, data in found if kind == "itsm.change.conflict_detected.v1"]


async def test_a_window_is_defined_read_revised_and_retired_with_etags_and_events(
    api, manager, requester, tenant, pools, infra
):
    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    cis = ids(2)
    await seed_cmdb(pools["change"], tenant, cis)
    created = await api.post(
        "/change-windows",
        json=window_body(
            kind="maintenance",
            scope="cis",
            ci_ids=cis,
            rrule="FREQ=WEEKLY;BYDAY=SU",
            start="2027-01-03T02:00:00",
            duration="PT2H",
        ),
        headers=manager,
    )
    assert created.status_code == 201, created.text
    window = created.json()
    assert window["reference"] == "WIN1" and created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == f"/change-windows/{window['id']}"
    path = f"/change-windows/{window['id']}"
    assert (await api.get(path, headers=requester)).json()["rrule"] == "FREQ=WEEKLY;BYDAY=SU"
    stale = await api.patch(path, json={"name": "x"}, headers={**manager, "If-Match": '"9"'})
    assert stale.status_code == 412
    revised = await api.patch(
        path, json={"duration": "PT3H"}, headers={**manager, "If-Match": '"1"'}
    )
    assert revised.status_code == 200, revised.text
    assert revised.json()["duration_seconds"] == 3 * 3600 and revised.headers["ETag"] == '"2"'
    retired = await api.delete(
        path, params={"reason": "moved to Saturdays"}, headers={**manager, "If-Match": '"2"'}
    )
    assert retired.status_code == 200 and retired.json()["state"] == "retired"
    history = (await api.get(f"{path}/history", headers=manager)).json()
    assert [h["action"] for h in history] == ["defined", "revised", "retired"]
    listed = await api.get("/change-windows", params={"state": "retired"}, headers=requester)
    assert [w["id"] for w in listed.json()["items"]] == [window["id"]]
    types = [kind for kind, _ in await published(infra, pools, tenant, start, window["id"])]
    assert types == [
        "itsm.change.window_defined.v1",
        "itsm.change.window_defined.v1",
        "itsm.change.window_retired.v1",
    ]


async def test_only_change_managers_define_windows_and_unknown_cis_are_named(
    api, manager, requester, tenant
):
    refused = await api.post("/change-windows", json=window_body(), headers=requester)
    assert refused.status_code == 403
    unknown = str(uuid.uuid4())
    bad = await api.post(
        "/change-windows", json=window_body(scope="cis", ci_ids=[unknown]), headers=manager
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "ci_ids" and unknown in bad.text
    zone = await api.post(
        "/change-windows", json=window_body(time_zone="Nowhere/X"), headers=manager
    )
    assert zone.status_code == 422 and zone.json()["errors"][0]["field"] == "time_zone"
    rule = await api.post(
        "/change-windows", json=window_body(rrule="FREQ=SECONDLY"), headers=manager
    )
    assert rule.status_code == 422 and rule.json()["errors"][0]["field"] == "rrule"


async def test_a_blackout_hitting_eighty_cis_of_a_change_lists_all_eighty_once_per_change(
    api, manager, requester, tenant, pools, infra
):
    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    cis = ids(100)
    frozen = cis[:80]
    await seed_cmdb(pools["change"], tenant, cis)
    change = await new_change(pools["change"], tenant, cis, DAY + timedelta(days=2))
    freeze = await api.post(
        "/change-windows", json=window_body(scope="cis", ci_ids=frozen), headers=manager
    )
    assert freeze.status_code == 201, freeze.text
    registry = api.runtime.registry
    before = sample_value(registry, CONFLICTS, {"kind": "blackout"})
    path = f"/changes/{change.id}/conflicts"
    first = await api.get(path, headers=requester)
    assert first.status_code == 200, first.text
    [blackout] = first.json()["conflicts"]
    assert blackout["kind"] == "blackout" and blackout["other_reference"] == "WIN1"
    assert sorted(blackout["ci_ids"]) == sorted(frozen)
    again = await api.get(path, headers=requester)
    assert again.json() == first.json()
    assert sample_value(registry, CONFLICTS, {"kind": "blackout"}) == before + 1
    # The blackout goes: the conflicts differ again (none), which is announced too.
    retired = await api.delete(
        f"/change-windows/{freeze.json()['id']}",
        params={"reason": "lifted"},
        headers={**manager, "If-Match": '"1"'},
    )
    assert retired.status_code == 200
    assert (await api.get(path, headers=requester)).json()["conflicts"] == []
    events = await conflict_events(infra, pools, tenant, start, str(change.id))
    assert [len(e["conflicts"]) for e in events] == [1, 0]
    assert sorted(events[0]["conflicts"][0]["ci_ids"]) == sorted(frozen)


async def test_changes_on_neighbours_within_the_hops_and_the_booked_implementer_conflict(
    api, requester, tenant, pools
):
    app, db, disk, mail = ids(4)
    # app depends on db, db on disk: disk is two hops down from app.
    await seed_cmdb(pools["change"], tenant, [app, db, disk, mail], depends=[(app, db), (db, disk)])
    at = DAY + timedelta(days=3)
    mine = await new_change(pools["change"], tenant, [app], at, implementer="ivan")
    on_db = await new_change(pools["change"], tenant, [db], at + timedelta(hours=1))
    on_disk = await new_change(pools["change"], tenant, [disk], at)
    by_ivan = await new_change(pools["change"], tenant, [mail], at, implementer="ivan")
    await new_change(pools["change"], tenant, [app], at + timedelta(hours=5))  # later
    one = (await api.get(f"/changes/{mine.id}/conflicts", headers=requester)).json()
    assert [(c["kind"], c["other_id"]) for c in one["conflicts"]] == [
        ("change", str(on_db.id)),
        ("implementer", str(by_ivan.id)),
    ]
    two = await api.get(f"/changes/{mine.id}/conflicts", params={"hops": 2}, headers=requester)
    assert {c["other_id"] for c in two.json()["conflicts"] if c["kind"] == "change"} == {
        str(on_db.id),
        str(on_disk.id),
    }
    hypothetical = await api.post(
        "/schedule/conflicts",
        json={
            "ci_ids": [disk],
            "start": (at + timedelta(minutes=30)).isoformat(),
            "end": (at + timedelta(hours=1)).isoformat(),
            "hops": 0,
        },
        headers=requester,
    )
    assert hypothetical.status_code == 200, hypothetical.text
    assert [(c["kind"], c["other_id"], c["ci_ids"]) for c in hypothetical.json()["conflicts"]] == [
        ("change", str(on_disk.id), [disk])
    ]


async def test_per_ci_maintenance_windows_and_open_major_incidents_are_conflicts(
    api, manager, requester, tenant, pools
):
    db, app = ids(2)
    await seed_cmdb(pools["change"], tenant, [db, app], services={db: ["payroll"]})
    # db is changed on Sunday nights only; the change runs on a Wednesday.
    sunday = await api.post(
        "/change-windows",
        json=window_body(
            name="db Sundays",
            kind="maintenance",
            scope="cis",
            ci_ids=[db],
            start="2027-01-03T01:00:00",
            duration="PT4H",
            rrule="FREQ=WEEKLY;BYDAY=SU",
        ),
        headers=manager,
    )
    assert sunday.status_code == 201, sunday.text
    async with tenant_transaction(pools["change"], tenant) as conn:
        await conn.execute(
            "INSERT INTO proj_incidents (tenant_id, id, number, title, state, major, services,"
            " declared_at, version, updated_at) VALUES ($1, $2, 7, 'Payroll down', 'in_progress',"
            " true, '{payroll}', now(), 2, now())",
            tenant,
            uuid.uuid4(),
        )
    change = await new_change(pools["change"], tenant, [db, app], DAY + timedelta(days=2))
    found = (await api.get(f"/changes/{change.id}/conflicts", headers=requester)).json()
    assert [(c["kind"], c["ci_ids"]) for c in found["conflicts"]] == [
        ("maintenance_window", [db]),
        ("major_incident", [db]),
    ]
    # Inside db's Sunday window (02:00 Berlin on 7 March 2027) only the incident remains.
    inside = await new_change(
        pools["change"], tenant, [db], datetime(2027, 3, 7, 1, 0, tzinfo=UTC), hours=1
    )
    kinds = [
        c["kind"]
        for c in (await api.get(f"/changes/{inside.id}/conflicts", headers=requester)).json()[
            "conflicts"
        ]
    ]
    assert kinds == ["major_incident"]


async def test_scheduling_into_a_blackout_needs_an_override_reason_which_is_recorded(
    api, manager, tenant, pools, infra
):
    cis = ids(3)
    await seed_cmdb(pools["change"], tenant, cis, services={cis[0]: ["payroll"]})
    freeze = await api.post(
        "/change-windows", json=window_body(scope="service", service="payroll"), headers=manager
    )
    assert freeze.status_code == 201, freeze.text
    change = await new_change(pools["change"], tenant, cis, DAY + timedelta(days=1))
    context = RequestContext(tenant, "mia", "")
    with pytest.raises(Conflict) as refused:
        async with ChangeUnitOfWork(pools["change"], context) as uow:
            await use_cases.check_schedulable(uow, change)
    assert refused.value.extensions["blackouts"] == [
        {"window_id": freeze.json()["id"], "reference": "WIN1", "ci_ids": [cis[0]]}
    ]
    assert "WIN1" in str(refused.value) and cis[0] in str(refused.value)
    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    async with ChangeUnitOfWork(pools["change"], context) as uow:
        await use_cases.check_schedulable(uow, change, override_reason="payroll fix, INC7")
        await uow.commit()
    overrides = [
        data
        for kind, data in await published(infra, pools, tenant, start, str(change.id))
        if kind == "itsm.change.blackout_overridden.v1"
    ]
    assert overrides == [
        {
            "change_id": str(change.id),
            "reason": "payroll fix, INC7",
            "blackouts": [{"window_id": freeze.json()["id"], "name": "WIN1", "ci_ids": [cis[0]]}],
        }
    ]


async def test_the_schedule_and_its_feed_show_changes_and_windows_of_the_period(
    api, manager, requester, tenant, pools
):
    cis = ids(2)
    await seed_cmdb(pools["change"], tenant, cis)
    change = await new_change(
        pools["change"], tenant, [cis[0]], DAY + timedelta(days=1), title="Kernel; patch, reboot"
    )
    await new_change(pools["change"], tenant, [cis[1]], DAY + timedelta(days=40))  # outside
    weekly = await api.post(
        "/change-windows",
        json=window_body(
            kind="maintenance",
            rrule="FREQ=WEEKLY;BYDAY=SU",
            start="2027-01-03T02:00:00",
            duration="PT2H",
        ),
        headers=manager,
    )
    assert weekly.status_code == 201
    period = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=14)).isoformat()}
    shown = await api.get("/schedule", params={**period, "ci": cis[0]}, headers=requester)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert [c["id"] for c in body["changes"]] == [str(change.id)]
    [window] = body["windows"]
    assert len(window["occurrences"]) == 2
    by_state = await api.get("/schedule", params={**period, "state": "closed"}, headers=requester)
    assert by_state.json()["changes"] == []
    assert (await api.get("/schedule.ics", params=period)).status_code == 401
    feed = await api.get("/schedule.ics", params=period, headers=requester)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    parsed = icalendar.Calendar.from_ical(feed.text)
    events = {str(e["UID"]).split("@")[0]: e for e in parsed.walk("VEVENT")}
    assert set(events) == {str(change.id), weekly.json()["id"]}
    assert str(events[str(change.id)]["SUMMARY"]) == f"{change.reference} Kernel; patch, reboot"
    assert str(events[weekly.json()["id"]]["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;BYDAY=SU"


async def test_the_next_free_slot_is_inside_the_maintenance_windows_and_outside_blackouts(
    api, manager, requester, tenant, pools
):
    db, other = ids(2)
    await seed_cmdb(pools["change"], tenant, [db, other])
    # db: Sundays 01:00-05:00 Berlin. The first Sunday is frozen, the second one is taken from
    # 01:00 to 02:00 by another change: the slot is 02:00-04:00 local on the second Sunday.
    await api.post(
        "/change-windows",
        json=window_body(
            kind="maintenance",
            scope="cis",
            ci_ids=[db],
            rrule="FREQ=WEEKLY;BYDAY=SU",
            start="2027-01-03T01:00:00",
            duration="PT4H",
        ),
        headers=manager,
    )
    await api.post(
        "/change-windows",
        json=window_body(scope="cis", ci_ids=[db], start="2027-03-07T00:00:00", duration="P1D"),
        headers=manager,
    )
    await new_change(
        pools["change"], tenant, [db], datetime(2027, 3, 14, 0, 0, tzinfo=UTC), hours=1
    )
    found = await api.get(
        "/schedule/next-free-slot",
        params={"ci": db, "duration": "PT2H", "after": DAY.isoformat()},
        headers=requester,
    )
    assert found.status_code == 200, found.text
    assert found.json()["start"] == "2027-03-14T01:00:00Z"
    assert found.json()["end"] == "2027-03-14T03:00:00Z"
    free = await api.post(
        "/schedule/conflicts",
        json={"ci_ids": [db], "start": found.json()["start"], "end": found.json()["end"]},
        headers=requester,
    )
    assert free.json()["conflicts"] == []


async def test_another_tenant_sees_none_of_the_windows_or_conflicts(
    api, manager, auth, tenant, pools
):
    cis = ids(1)
    await seed_cmdb(pools["change"], tenant, cis)
    made = await api.post("/change-windows", json=window_body(), headers=manager)
    change = await new_change(pools["change"], tenant, cis, DAY + timedelta(days=1))
    other = auth(f"{tenant}-x", "change_manager", subject="mia")
    assert (await api.get(f"/change-windows/{made.json()['id']}", headers=other)).status_code == 404
    assert (await api.get(f"/changes/{change.id}/conflicts", headers=other)).status_code == 404
    assert (await api.get("/change-windows", headers=other)).json()["items"] == []


async def test_a_window_named_after_a_business_calendar_is_read_in_the_calendar_zone(
    api, manager, tenant, infra
):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        for version, zone in ((2, "Asia/Kolkata"), (1, "America/New_York")):  # stale 1 after 2
            calendar = CalendarDefinedV1(
                name="ops-hours",
                calendar=CalendarV1(timezone=zone, weekly_hours={}),
                version=version,
            )
            await send_event(
                producer,
                new_envelope(
                    source="itsm/config",
                    type="itsm.config.calendar.defined.v1",
                    subject="calendar/ops-hours",
                    tenantid=tenant,
                    itsmversion=version,
                    actor="tester",
                    data=calendar.model_dump(mode="json"),
                ),
                CONFIG_EVENTS,
            )
    finally:
        await producer.stop()
    body = window_body(calendar="ops-hours", time_zone=None)
    unknown = await api.post("/change-windows", json={**body, "calendar": "nope"}, headers=manager)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "calendar"
    made = await eventually(
        lambda: api.post("/change-windows", json=body, headers=manager),
        lambda r: r.status_code == 201,
    )
    assert made.json()["time_zone"] == "Asia/Kolkata" and made.json()["calendar"] == "ops-hours"


async def test_the_one_statement_read_around_a_window_finds_what_the_separate_reads_find(
    tenant, pools
):
    """`Schedule.around` (one round trip, what the gate and the conflicts read every call)
    against the reads it stands for: neighbourhood, services, booked changes, major incidents
    on a CI, on a service a CI supports and on a service the change names; resolved and
    minor incidents, and changes outside the window or the hops, are left out."""
    app, db, disk, mail, far = ids(5)
    await seed_cmdb(
        pools["change"],
        tenant,
        [app, db, disk, mail, far],
        depends=[(app, db), (db, disk), (disk, far)],
        services={db: ["payroll"], mail: ["mail"]},
    )
    at = DAY + timedelta(days=10)
    mine = await new_change(pools["change"], tenant, [app, db], at, implementer="ivan")
    on_disk = await new_change(pools["change"], tenant, [disk], at + timedelta(hours=1))
    on_far = await new_change(pools["change"], tenant, [far], at)
    by_ivan = await new_change(pools["change"], tenant, [mail], at, implementer="ivan")
    await new_change(pools["change"], tenant, [db], at + timedelta(hours=3))  # after the window
    incidents = {
        "on app": (True, None, [], app),
        "on payroll": (True, None, ["payroll"], None),
        "on hr (named)": (True, None, ["hr"], None),
        "resolved": (True, datetime.now(UTC), ["payroll"], None),
        "minor": (False, None, ["payroll"], app),
        "elsewhere": (True, None, ["mail"], None),
    }
    async with tenant_transaction(pools["change"], tenant) as conn:
        for title, (major, resolved, services, ci) in incidents.items():
            await conn.execute(
                "INSERT INTO proj_incidents (tenant_id, id, number, title, state, major, services,"
                " ci_id, declared_at, resolved_at, version, updated_at) VALUES ($1, $2, 1, $3,"
                " 'in_progress', $4, $5, $6, now(), $7, 1, now())",
                tenant,
                uuid.uuid4(),
                title,
                major,
                services,
                uuid.UUID(ci) if ci else None,
                resolved,
            )
    cis = [app, db]
    async with ChangeUnitOfWork(pools["change"], RequestContext(tenant, "rita", "")) as uow:
        for hops in (0, 1, 2, 3):
            found = await uow.schedule.around(
                cis, hops, at, at + timedelta(hours=2), services=["hr"], implementer="ivan"
            )
            near = await uow.schedule.neighbourhood(cis, hops)
            reachable = sorted({ci for reach in near.values() for ci in reach})
            services = await uow.schedule.services_of(cis)
            assert found.near == near
            assert found.services == services == {app: (), db: ("payroll",)}
            assert found.changes == await uow.schedule.booked_changes(
                at, at + timedelta(hours=2), ci_ids=reachable, implementer="ivan"
            )
            assert found.major_incidents == await uow.schedule.major_incidents(
                ["hr", "payroll"], cis
            )
            booked = {c.id for c in found.changes}
            # disk is one hop down from db, far two.
            assert booked == {mine.id, by_ivan.id} | ({on_disk.id} if hops >= 1 else set()) | (
                {on_far.id} if hops >= 2 else set()
            )
        assert sorted(i.title for i in found.major_incidents) == [
            "on app",
            "on hr (named)",
            "on payroll",
        ]
