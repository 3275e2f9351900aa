"""Service catalogue use cases (calendars, SLA policies) on a fake unit of work."""

from __future__ import annotations

import uuid

import pytest

from services.config.application.catalogue import (
    DefineCalendar,
    DefinePolicy,
    announce_business_service,
    define_calendar,
    define_policy,
)
from services.config.domain.catalogue import SlaPolicyDefinition, Target
from shared.calendars import CalendarSpec
from shared.errors import Conflict, PreconditionFailed, StaleVersion, ValidationFailed
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CalendarDefinedV1,
    SlaPolicyDefinedV1,
)
from tests.unit.fakes_config import ConfigStore, a_ci, unit

TARGETS = {
    "P1": Target(15, 240),
    "P2": Target(30, 480),
    "P3": Target(120, 1440),
    "P4": Target(480, 4800),
    "P5": Target(1440, 9600),
}
OFFICE = CalendarSpec.model_validate(
    {"timezone": "Europe/Berlin", "weekly_hours": {"mon": [{"start": "08:00", "end": "18:00"}]}}
)
LONGER = CalendarSpec.model_validate(
    {"timezone": "Europe/Berlin", "weekly_hours": {"mon": [{"start": "07:00", "end": "19:00"}]}}
)
NEVER_OPEN = CalendarSpec.model_validate({"timezone": "Europe/Berlin", "weekly_hours": {}})


def policy(**overrides: object) -> SlaPolicyDefinition:
    fields: dict[str, object] = {"description": "", "calendar": "office", "targets": TARGETS}
    return SlaPolicyDefinition(**(fields | overrides))  # type: ignore[arg-type]


async def with_office(store: ConfigStore) -> None:
    await define_calendar(unit(store), DefineCalendar("office", "", OFFICE))


async def test_defining_a_calendar_stores_version_1_and_records_it():
    store = ConfigStore()
    saved = await define_calendar(unit(store), DefineCalendar("office", "9 to 5", OFFICE))
    assert (saved["name"], saved["version"], saved["updated_by"]) == ("office", 1, "alice")
    (event,) = store.events
    assert isinstance(event.payload, CalendarDefinedV1)
    assert (event.subject, event.version) == ("calendar/office", 1)


async def test_a_calendar_that_never_opens_is_refused_naming_its_hours():
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await define_calendar(unit(store), DefineCalendar("office", "", NEVER_OPEN))
    assert [f.field for f in refused.value.fields] == ["calendar.weekly_hours"]
    assert store.calendars == {} and store.events == []


async def test_if_match_on_a_calendar_must_name_its_current_version():
    store = ConfigStore()
    with pytest.raises(PreconditionFailed, match="does not exist yet"):
        await define_calendar(unit(store), DefineCalendar("office", "", OFFICE, 1))
    await with_office(store)
    with pytest.raises(StaleVersion) as stale:
        await define_calendar(unit(store), DefineCalendar("office", "", LONGER, 3))
    assert stale.value.current == 1
    saved = await define_calendar(unit(store), DefineCalendar("office", "", LONGER, 1))
    assert saved["version"] == 2


async def test_redefining_a_calendar_republishes_every_policy_on_it_with_the_new_hours():
    store = ConfigStore()
    await with_office(store)
    await define_policy(unit(store), DefinePolicy("gold", policy()))
    store.events.clear()
    await define_calendar(unit(store), DefineCalendar("office", "", LONGER))
    calendar, republished = store.events
    assert isinstance(calendar.payload, CalendarDefinedV1) and calendar.version == 2
    assert isinstance(republished.payload, SlaPolicyDefinedV1)
    assert (republished.subject, republished.version) == ("sla-policy/gold", 2)
    assert republished.payload.calendar.weekly_hours["mon"][0].start == "07:00"
    assert store.policy_versions[-1]["cause"] == "calendar_redefined"


async def test_defining_a_policy_records_it_with_targets_in_seconds():
    store = ConfigStore()
    await with_office(store)
    saved = await define_policy(unit(store), DefinePolicy("gold", policy()))
    assert (saved["name"], saved["version"]) == ("gold", 1)
    event = store.events[-1]
    assert isinstance(event.payload, SlaPolicyDefinedV1)
    assert event.payload.targets["P1"].response_seconds == 15 * 60


async def test_a_policy_on_an_unknown_calendar_is_refused_naming_calendar():
    with pytest.raises(ValidationFailed) as refused:
        await define_policy(unit(ConfigStore()), DefinePolicy("gold", policy()))
    assert [f.field for f in refused.value.fields] == ["calendar"]


async def test_a_policy_breaking_its_own_rules_is_refused_before_anything_is_read():
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await define_policy(unit(store), DefinePolicy("gold", policy(warning_threshold=1.5)))
    assert [f.field for f in refused.value.fields] == ["warning_threshold"]
    assert store.rollbacks == 0  # refused before the unit of work opened


async def test_services_must_be_live_business_services_of_the_tenant_each_named_by_place():
    store = ConfigStore()
    await with_office(store)
    server = a_ci(store)
    retired = a_ci(store, "business_service", status="retired")
    live = a_ci(store, "business_service")
    services = (live.id, server.id, retired.id, uuid.uuid4())
    with pytest.raises(ValidationFailed) as refused:
        await define_policy(unit(store), DefinePolicy("gold", policy(services=services)))
    assert [f.field for f in refused.value.fields] == ["services.1", "services.2", "services.3"]
    assert store.policies == {}


async def test_a_service_another_policy_covers_and_a_second_default_are_conflicts_naming_each():
    store = ConfigStore()
    await with_office(store)
    shop = a_ci(store, "business_service")
    await define_policy(
        unit(store), DefinePolicy("gold", policy(services=(shop.id,), default=True))
    )
    with pytest.raises(Conflict) as refused:
        await define_policy(
            unit(store), DefinePolicy("silver", policy(services=(shop.id,), default=True))
        )
    assert [f.field for f in refused.value.fields] == ["services.0", "default"]
    assert "silver" not in store.policies


async def test_services_a_policy_gains_or_loses_are_announced_with_their_policy():
    store = ConfigStore()
    await with_office(store)
    shop, blog = a_ci(store, "business_service"), a_ci(store, "business_service")
    await define_policy(unit(store), DefinePolicy("gold", policy(services=(shop.id,))))
    gained = store.of_type(BusinessServiceDefinedV1)
    assert [(e.id, e.sla_policy) for e in gained] == [(str(shop.id), "gold")]
    store.events.clear()
    await define_policy(unit(store), DefinePolicy("gold", policy(services=(blog.id,)), 1))
    changed = {e.id: e.sla_policy for e in store.of_type(BusinessServiceDefinedV1)}
    assert changed == {str(shop.id): None, str(blog.id): "gold"}
    assert store.announcements == {shop.id: 2, blog.id: 1}


async def test_an_announcement_carries_the_services_own_counter_as_its_version():
    store = ConfigStore()
    shop = a_ci(store, "business_service")
    for _ in range(2):
        work = unit(store)
        async with work:
            await announce_business_service(work, shop)
    assert [(e.subject, e.version) for e in store.events] == [
        (f"business-service/{shop.id}", 1),
        (f"business-service/{shop.id}", 2),
    ]
