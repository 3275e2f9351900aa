"""Outage records without a database: validation, versions and events, and the outage of a major
incident ended when the incident is resolved."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.incident.application import handlers, outages
from services.incident.application.handlers import LogIncident
from services.incident.application.outages import RecordOutage
from services.incident.domain import outage as domain
from shared.errors import Conflict, NotFound, StaleVersion, ValidationFailed
from shared.events.catalogue import OutageRecordedV1, OutageUpdatedV1
from tests.unit.fakes_incident import NOW, FakeIncidentUnitOfWork, a_service, new_metrics

H = timedelta(hours=1)


def with_services() -> FakeIncidentUnitOfWork:
    uow = FakeIncidentUnitOfWork(metrics=new_metrics())
    for name in ("payroll", "mail"):
        service = a_service(name)
        uow.projected.services[service.id] = service
    return uow


async def recorded(uow, command: RecordOutage, *, on_incident=False, now=NOW):
    async with uow:
        return await outages.record_outage_in(uow, command, on_incident=on_incident, now=now)


async def test_an_outage_is_recorded_at_version_1_with_its_services_as_ids():
    uow = with_services()
    outage = await recorded(
        uow, RecordOutage(("payroll", "svc-mail"), "outage", NOW - H, summary=" db down ")
    )
    assert (outage.services, outage.version, outage.summary) == (
        ("svc-payroll", "svc-mail"),
        1,
        "db down",
    )
    assert uow.events(f"outage/{outage.id}") == [("OutageRecordedV1", 1)]
    [event] = uow.payloads(OutageRecordedV1)
    assert event.outage.services == ["svc-payroll", "svc-mail"]
    assert event.outage.end is None and event.outage.incident_id is None
    assert uow.metrics is not None
    assert uow.metrics.outages_recorded.labels("outage")._value.get() == 1


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        (RecordOutage(("svc-payroll",), "outage", NOW - H, NOW - 2 * H), ["end"]),
        (RecordOutage(("svc-payroll",), "outage", NOW + H), ["start"]),
        (RecordOutage(("svc-payroll",), "outage", NOW - H, NOW + H), ["end"]),
        (RecordOutage(("svc-payroll", "nope"), "degradation", NOW - H), ["services[1]"]),
        (
            RecordOutage(("svc-payroll",), "outage", NOW - H, incident_id=uuid.uuid4()),
            ["incident_id"],
        ),
    ],
)
async def test_bad_times_unknown_services_and_unknown_incidents_are_422_naming_the_field(
    command, fields
):
    uow = with_services()
    with pytest.raises(ValidationFailed) as refused:
        await recorded(uow, command)
    assert [f.field for f in refused.value.fields] == fields
    assert uow.written == [] and uow.outage_rows.rows == {}


async def test_an_end_within_the_clock_tolerance_is_taken():
    uow = with_services()
    outage = await recorded(
        uow, RecordOutage(("svc-payroll",), "outage", NOW - H, NOW + domain.FUTURE_TOLERANCE)
    )
    assert outage.end == NOW + domain.FUTURE_TOLERANCE


async def logged_incident(uow, *, major: bool):
    async with uow:
        return await handlers.log_incident_in(
            uow, LogIncident("Payroll down", "", 1 if major else 3, 1 if major else 3), now=NOW
        )


async def test_an_outage_on_an_incident_needs_a_major_incident():
    uow = with_services()
    minor = await logged_incident(uow, major=False)
    command = RecordOutage(("svc-payroll",), "outage", NOW, incident_id=minor.id)
    with pytest.raises(ValidationFailed) as refused:
        await recorded(uow, command)
    assert [f.field for f in refused.value.fields] == ["incident_id"]
    with pytest.raises(Conflict):
        await recorded(uow, command, on_incident=True)
    unknown = RecordOutage(("svc-payroll",), "outage", NOW, incident_id=uuid.uuid4())
    with pytest.raises(NotFound):
        await recorded(uow, unknown, on_incident=True)


async def updated(uow, outage_id, wanted, expected, now=NOW + 2 * H):
    async with uow:
        return await outages.update_outage_in(
            uow, outage_id, wanted, expected_version=expected, now=now
        )


async def test_setting_the_end_then_withdrawing_makes_versions_2_and_3():
    uow = with_services()
    outage = await recorded(uow, RecordOutage(("svc-payroll",), "outage", NOW - H))
    ended = await updated(uow, outage.id, {"end": NOW}, 1)
    assert (ended.end, ended.version) == (NOW, 2)
    with pytest.raises(StaleVersion):
        await updated(uow, outage.id, {"summary": "late"}, 1)
    with pytest.raises(ValidationFailed) as refused:
        await updated(uow, outage.id, {"withdrawn": True}, 2)
    assert [f.field for f in refused.value.fields] == ["reason"]
    withdrawn = await updated(uow, outage.id, {"withdrawn": True, "reason": "a test alert"}, 2)
    assert (withdrawn.withdrawn, withdrawn.withdrawn_reason, withdrawn.version) == (
        True,
        "a test alert",
        3,
    )
    assert uow.events(f"outage/{outage.id}") == [
        ("OutageRecordedV1", 1),
        ("OutageUpdatedV1", 2),
        ("OutageUpdatedV1", 3),
    ]
    last = uow.payloads(OutageUpdatedV1)[-1]
    assert (last.withdrawn, last.reason, last.outage.end) == (True, "a test alert", NOW)
    with pytest.raises(Conflict):
        await updated(uow, outage.id, {"summary": "after all"}, 3)


async def test_an_end_before_the_start_is_refused_and_a_change_of_nothing_keeps_the_version():
    uow = with_services()
    outage = await recorded(uow, RecordOutage(("svc-payroll",), "outage", NOW - H))
    with pytest.raises(ValidationFailed) as refused:
        await updated(uow, outage.id, {"end": NOW - 2 * H}, 1)
    assert [f.field for f in refused.value.fields] == ["end"]
    same = await updated(uow, outage.id, {"kind": "outage"}, 1)
    assert same.version == 1 and uow.events(f"outage/{outage.id}") == [("OutageRecordedV1", 1)]


async def test_resolving_a_major_incident_ends_its_open_outages_at_the_resolution():
    uow = with_services()
    major = await logged_incident(uow, major=True)
    assert major.major
    still_open = await recorded(
        uow, RecordOutage(("svc-payroll",), "outage", NOW, incident_id=major.id), now=NOW + H
    )
    already_over = await recorded(
        uow,
        RecordOutage(("svc-mail",), "degradation", NOW, NOW + H, incident_id=major.id),
        now=NOW + H,
    )
    async with uow:
        locked = await handlers.locked_incident(uow, major.id, None)
        await handlers.move_incident(
            uow,
            locked,
            "resolved",
            now=NOW + 2 * H,
            resolution_code="solved_permanently",
            resolution_notes="restored",
        )
    assert uow.outage_rows.rows[still_open.id].end == NOW + 2 * H
    assert uow.outage_rows.rows[still_open.id].version == 2
    assert uow.outage_rows.rows[already_over.id].version == 1
    assert uow.events(f"outage/{still_open.id}") == [
        ("OutageRecordedV1", 1),
        ("OutageUpdatedV1", 2),
    ]
