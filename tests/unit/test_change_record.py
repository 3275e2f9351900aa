"""The change record (domain, pure): states, the route of each type, outcomes, and approvals
bound to the approved content."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.change.domain.change import (
    CHANGE,
    Change,
    content_hash,
    edit,
    open_change,
    transition,
)
from shared.errors import InvalidTransition, ValidationFailed
from shared.events.catalogue import (
    ChangeCreatedV1,
    ChangeImplementedV1,
    ChangeTransitionedV1,
    ChangeUpdatedV1,
)

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
CI = uuid.UUID("00000000-0000-0000-0000-0000000000c1")


def _change(type: str = "normal", **fields: object) -> Change:
    change, _ = open_change(
        tenant_id="t1",
        number=1,
        type=type,  # type: ignore[arg-type]
        title="Patch the database",
        description="",
        justification="CVE",
        requester="alice",
        actor="alice",
        now=NOW,
        **fields,
    )
    return change


def _walk(change: Change, *states: str) -> Change:
    for state in states:
        outcome = "successful" if state == "review" else None
        change = transition(change, state, actor="bob", now=NOW, outcome=outcome).change
    return change


def test_a_new_change_is_version_one_in_new_and_announced_with_its_content_hash():
    change, events = open_change(
        tenant_id="t1",
        number=7,
        type="normal",
        title="t",
        description="d",
        justification="j",
        requester="alice",
        actor="alice",
        now=NOW,
        affected_cis=(CI, CI),
    )
    assert (change.state, change.version, change.reference) == ("new", 1, "CHG7")
    assert change.affected_cis == (CI,)
    [created] = events
    assert isinstance(created, ChangeCreatedV1)
    assert created.content_hash == content_hash(change)
    assert created.ci_ids == [str(CI)]


@pytest.mark.parametrize(
    ("type", "first"), [("standard", "scheduled"), ("normal", "assess"), ("emergency", "authorize")]
)
def test_each_type_takes_its_own_first_move_and_no_other(type, first):
    fields = {"incidents": (uuid.uuid4(),)} if type == "emergency" else {}
    change = _change(type, **fields)
    assert transition(change, first, actor="bob", now=NOW).change.state == first
    for other in {"scheduled", "assess", "authorize"} - {first}:
        with pytest.raises(InvalidTransition) as refused:
            transition(change, other, actor="bob", now=NOW)
        assert refused.value.allowed == (first, "cancelled")


def test_an_emergency_change_without_a_linked_incident_is_refused_naming_the_field():
    with pytest.raises(ValidationFailed) as refused:
        _change("emergency")
    assert [f.field for f in refused.value.fields] == ["incident_ids"]


def test_an_illegal_move_is_refused_naming_the_allowed_ones():
    change = _walk(_change(), "assess")
    with pytest.raises(InvalidTransition) as refused:
        transition(change, "implement", actor="bob", now=NOW)
    assert refused.value.allowed == ("authorize", "cancelled")


def test_leaving_implement_needs_an_outcome_and_announces_the_implementation_on_the_cis():
    change = _walk(_change(affected_cis=(CI,)), "assess", "authorize", "scheduled", "implement")
    assert change.actual_start == NOW
    with pytest.raises(ValidationFailed) as refused:
        transition(change, "review", actor="bob", now=NOW)
    assert [f.field for f in refused.value.fields] == ["outcome"]
    done = transition(change, "review", actor="bob", now=NOW, outcome="rolled_back")
    assert done.change.outcome == "rolled_back"
    moved, implemented = done.events
    assert isinstance(moved, ChangeTransitionedV1) and moved.outcome == "rolled_back"
    assert isinstance(implemented, ChangeImplementedV1)
    assert implemented.ci_ids == [str(CI)] and implemented.outcome == "rolled_back"


def test_cancelling_needs_a_reason():
    with pytest.raises(ValidationFailed):
        transition(_change(), "cancelled", actor="bob", now=NOW)
    cancelled = transition(_change(), "cancelled", actor="bob", now=NOW, reason="duplicate")
    assert cancelled.change.cancel_reason == "duplicate"
    assert CHANGE.allowed_from("cancelled") == ()


def test_editing_approved_content_when_scheduled_voids_approvals_and_returns_to_authorize():
    start = NOW + timedelta(days=2)
    change = _walk(
        _change(planned_start=start, planned_end=start + timedelta(hours=1)),
        "assess",
        "authorize",
        "scheduled",
    )
    edited = edit(change, {"planned_end": start + timedelta(hours=3)}, actor="carol", now=NOW)
    assert edited.change.state == "authorize"
    assert edited.change.version == change.version + 1
    updated, moved = edited.events
    assert isinstance(updated, ChangeUpdatedV1) and updated.approvals_voided
    assert updated.content_hash != change.content_hash
    assert isinstance(moved, ChangeTransitionedV1) and moved.to_state == "authorize"


def test_editing_what_approvals_do_not_cover_keeps_the_schedule():
    change = _walk(_change(), "assess", "authorize", "scheduled")
    edited = edit(change, {"description": "more words"}, actor="carol", now=NOW)
    assert edited.change.state == "scheduled"
    [updated] = edited.events
    assert isinstance(updated, ChangeUpdatedV1) and not updated.approvals_voided


def test_the_content_hash_ignores_the_order_of_the_affected_cis():
    other = uuid.uuid4()
    assert content_hash(_change(affected_cis=(CI, other))) == content_hash(
        _change(affected_cis=(other, CI))
    )


def test_a_window_that_ends_before_it_starts_is_refused_naming_planned_end():
    with pytest.raises(ValidationFailed) as refused:
        _change(planned_start=NOW, planned_end=NOW - timedelta(hours=1))
    assert [f.field for f in refused.value.fields] == ["planned_end"]


def test_deviation_from_the_planned_window_is_flagged():
    change = _change(planned_start=NOW, planned_end=NOW + timedelta(hours=1))
    from dataclasses import replace

    assert not replace(change, actual_start=NOW, actual_end=NOW + timedelta(minutes=50)).deviation
    assert replace(change, actual_start=NOW, actual_end=NOW + timedelta(hours=2)).deviation
