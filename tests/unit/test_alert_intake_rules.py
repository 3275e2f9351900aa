"""What an alert notification does to its group's incident, and the description it gets."""

import pytest

from services.incident.application.alerts import ALERT_RESOLUTION_CODE, describe, next_step
from services.incident.domain.alerts import MAX_DESCRIPTION
from services.incident.domain.workflow import RESOLUTION_CODES

OPEN = ("new", "in_progress", "on_hold")


def test_a_trigger_for_a_group_without_incident_opens_one() -> None:
    assert next_step("trigger", None, auto_resolve=False) == "open"


@pytest.mark.parametrize("state", OPEN)
def test_a_trigger_for_an_open_incident_updates_it(state: str) -> None:
    assert next_step("trigger", state, auto_resolve=False) == "update"


def test_a_trigger_for_a_resolved_incident_reopens_it() -> None:
    assert next_step("trigger", "resolved", auto_resolve=False) == "reopen"


@pytest.mark.parametrize("state", ["closed", "cancelled"])
def test_a_trigger_after_a_closed_or_cancelled_incident_opens_a_new_one(state: str) -> None:
    assert next_step("trigger", state, auto_resolve=False) == "open"


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
@pytest.mark.parametrize("auto_resolve", [False, True])
def test_a_follow_up_for_a_group_without_incident_is_ignored(
    action: str, auto_resolve: bool
) -> None:
    assert next_step(action, None, auto_resolve=auto_resolve) == "ignore"


def test_acknowledging_a_new_incident_starts_work() -> None:
    assert next_step("acknowledge", "new", auto_resolve=False) == "start_work"


@pytest.mark.parametrize("state", ["in_progress", "on_hold", "resolved", "closed", "cancelled"])
def test_acknowledging_an_incident_already_worked_on_only_notes_it(state: str) -> None:
    assert next_step("acknowledge", state, auto_resolve=False) == "note"


@pytest.mark.parametrize("state", OPEN)
def test_a_resolve_resolves_an_open_incident_only_when_the_tenant_says_so(state: str) -> None:
    assert next_step("resolve", state, auto_resolve=True) == "resolve"
    assert next_step("resolve", state, auto_resolve=False) == "note"


@pytest.mark.parametrize("state", ["resolved", "closed", "cancelled"])
def test_a_resolve_for_an_incident_no_longer_open_only_notes_it(state: str) -> None:
    assert next_step("resolve", state, auto_resolve=True) == "note"


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert action"):
        next_step("snooze", "new", auto_resolve=False)


def test_the_resolution_code_of_a_cleared_alert_is_one_of_the_fixed_codes() -> None:
    assert ALERT_RESOLUTION_CODE in RESOLUTION_CODES


def test_without_remarks_the_description_is_the_alerts() -> None:
    assert describe("alerts", ()) == "alerts"


def test_remarks_come_before_the_alerts() -> None:
    text = describe("alerts", ("no CI", "no service"))
    assert text == "no CI\n\nno service\n\nalerts"


def test_the_description_with_remarks_stays_within_the_incident_limit_and_marks_the_cut() -> None:
    text = describe("x" * MAX_DESCRIPTION, ("no CI",))
    assert len(text) == MAX_DESCRIPTION
    assert text.startswith("no CI\n\n")
    assert text.endswith("… (truncated)")
