"""The rules an SLA policy obeys on its own, and how policies and services appear in events."""

import uuid
from datetime import UTC, datetime

import pytest

from services.config.domain.catalogue import (
    MAX_TARGET_MINUTES,
    SlaPolicyDefinition,
    Target,
    business_service_event,
    calendar_problems,
    policy_event,
    policy_problems,
)
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec

TARGETS = {
    "P1": Target(15, 240),
    "P2": Target(30, 480),
    "P3": Target(120, 1440),
    "P4": Target(480, 4800),
    "P5": Target(1440, 9600),
}
OFFICE = CalendarSpec.model_validate(
    {
        "timezone": "Europe/Berlin",
        "weekly_hours": {"mon": [{"start": "08:00", "end": "18:00"}]},
        "holidays": ["2025-12-25"],
    }
)


def policy(**overrides: object) -> SlaPolicyDefinition:
    fields: dict[str, object] = {"description": "", "calendar": "office", "targets": TARGETS}
    return SlaPolicyDefinition(**{**fields, **overrides})  # type: ignore[arg-type]


def fields(definition: SlaPolicyDefinition) -> list[str]:
    return [p.field for p in policy_problems(definition)]


def test_a_complete_policy_with_the_defaults_is_acceptable():
    assert policy_problems(policy()) == []
    assert policy().pause_on == ("awaiting_customer",)
    assert policy().warning_threshold == 0.75


def test_every_priority_needs_its_targets_and_only_p1_to_p5_are_priorities():
    targets = {p: t for p, t in TARGETS.items() if p != "P3"} | {"P6": Target(1, 2)}
    assert fields(policy(targets=targets)) == ["targets.P3", "targets.P6"]


def test_a_response_due_after_resolution_is_refused_naming_the_response_target():
    problems = policy_problems(policy(targets={**TARGETS, "P2": Target(500, 480)}))
    assert [p.field for p in problems] == ["targets.P2.response_minutes"]
    assert "480" in problems[0].detail


def test_equal_response_and_resolution_targets_are_allowed():
    assert fields(policy(targets={**TARGETS, "P5": Target(60, 60)})) == []


@pytest.mark.parametrize("minutes", [0, -5, MAX_TARGET_MINUTES + 1])
def test_targets_are_positive_minutes_of_at_most_a_year(minutes):
    targets = {**TARGETS, "P4": Target(10, minutes)}
    assert fields(policy(targets=targets)) == ["targets.P4.resolution_minutes"]


def test_a_policy_may_pause_for_every_hold_reason_and_for_a_pending_approval():
    reasons = ("awaiting_customer", "awaiting_vendor", "awaiting_change", "awaiting_approval")
    assert fields(policy(pause_on=reasons)) == []


def test_pause_reasons_must_be_known_and_listed_once():
    definition = policy(pause_on=("awaiting_vendor", "lunch", "awaiting_vendor"))
    assert fields(definition) == ["pause_on.1", "pause_on.2"]


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_the_warning_threshold_is_a_fraction_strictly_between_0_and_1(threshold):
    assert fields(policy(warning_threshold=threshold)) == ["warning_threshold"]


def test_a_service_listed_twice_is_refused_at_its_second_place():
    service = uuid.uuid4()
    assert fields(policy(services=(service, uuid.uuid4(), service))) == ["services.2"]


def test_a_calendar_that_never_opens_is_refused():
    closed = CalendarSpec(timezone="UTC", weekly_hours={"mon": []})
    assert [p.field for p in calendar_problems(closed)] == ["calendar.weekly_hours"]
    assert calendar_problems(OFFICE) == []


def test_the_policy_event_carries_the_calendar_in_full_and_targets_in_seconds():
    service = uuid.uuid4()
    event = policy_event("gold", policy(services=(service,), default=True), OFFICE, 3)
    assert event.targets["P1"].response_seconds == 15 * 60
    assert event.targets["P5"].resolution_seconds == 9600 * 60
    assert event.calendar_name == "office"
    assert event.calendar.model_dump() == OFFICE.model_dump()
    assert (event.services, event.default, event.version) == ([str(service)], True, 3)


def business_service(**overrides: object) -> ConfigurationItem:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": "t",
        "ci_class": "business_service",
        "name": "Payments",
        "status": "active",
        "owner_team": None,
        "criticality": 1,
        "attributes": {"owner": "payments-team", "customer": "Retail", "availability_target": 99},
        "external_ids": {},
        "controlled": False,
        "version": 4,
        "created_at": now,
        "updated_at": now,
        "updated_by": "carol",
    }
    return ConfigurationItem(**{**fields, **overrides})  # type: ignore[arg-type]


def test_a_business_service_event_reads_owner_customer_and_availability_from_attributes():
    ci = business_service()
    event = business_service_event(ci, "gold", 7)
    assert (event.id, event.owner, event.customer) == (str(ci.id), "payments-team", "Retail")
    assert (event.availability_target, event.sla_policy, event.version) == (99.0, "gold", 7)


def test_only_business_service_cis_are_announced_as_business_services():
    with pytest.raises(ValueError, match="not a business_service"):
        business_service_event(business_service(ci_class="server"), None, 1)
