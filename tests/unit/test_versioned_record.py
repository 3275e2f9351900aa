"""The pure parts of the versioned-record building block (shared/records/record.py and
workflow.py): one way to change a record, one way to move it, and refusals that are the typed
errors the HTTP edge maps by itself (issue 18: errors at the edge)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from shared.errors import Conflict, InvalidTransition, ValidationFailed
from shared.http.problems import problem_of
from shared.records.record import (
    Changed,
    VersionedRecord,
    apply_change,
    change_value,
    diff,
    transition,
)
from shared.records.workflow import (
    IllegalTransition,
    InvalidTransitionDetails,
    StateMachine,
    UnknownState,
)

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Ticket(VersionedRecord):
    PREFIX: ClassVar[str] = "TCK"

    number: int | None
    title: str
    closed_at: datetime | None = None
    tags: tuple[str, ...] = ()


MACHINE = StateMachine[str](
    "ticket",
    {"open": frozenset({"done"}), "done": frozenset()},
    {("open", "done"): ("notes",)},
    hints={"notes": "; say what was done"},
)


def ticket(**values: object) -> Ticket:
    fields: dict[str, object] = {
        "id": uuid.UUID(int=1),
        "tenant_id": "t1",
        "state": "open",
        "version": 1,
        "created_at": T0,
        "created_by": "ann",
        "updated_at": T0,
        "updated_by": "ann",
        "number": 7,
        "title": "printer",
    }
    return Ticket(**{**fields, **values})  # type: ignore[arg-type]


def test_the_reference_is_the_prefix_and_the_number_and_none_without_a_number():
    assert ticket().reference == "TCK7"
    assert ticket(number=None).reference is None


def test_a_change_bumps_the_version_stamps_who_and_when_and_collects_what_changed():
    later = T0 + timedelta(hours=1)
    after, changes = apply_change(
        ticket(), {"title": "scanner", "tags": ("a",)}, actor="bob", now=later
    )
    assert (after.version, after.updated_at, after.updated_by) == (2, later, "bob")
    assert (after.created_at, after.created_by) == (T0, "ann")
    assert changes == {
        "title": {"from": "printer", "to": "scanner"},
        "tags": {"from": [], "to": ["a"]},
    }


def test_a_field_set_to_its_own_value_is_not_a_change():
    assert diff(ticket(), {"title": "printer"}) == {}
    after, changes = apply_change(ticket(), {"title": "printer"}, actor="bob", now=T0)
    assert changes == {} and after.version == 2


def test_change_values_are_json_with_instants_in_rfc_3339_and_ids_as_text():
    assert change_value(T0) == "2026-05-01T10:00:00Z"
    assert change_value((uuid.UUID(int=2),)) == [str(uuid.UUID(int=2))]


def test_a_transition_moves_the_state_and_sets_the_values_in_one_version():
    after, changes = transition(
        ticket(),
        MACHINE,
        "done",
        actor="bob",
        now=T0,
        details={"notes": "fixed"},
        values={"closed_at": T0},
    )
    assert (after.state, after.version, after.closed_at) == ("done", 2, T0)
    assert list(changes) == ["state", "closed_at"]
    assert changes["state"] == {"from": "open", "to": "done"}


def test_an_illegal_move_is_an_invalid_transition_refused_before_the_guard_runs():
    ran: list[Ticket] = []
    with pytest.raises(IllegalTransition) as refused:
        transition(ticket(state="done"), MACHINE, "open", actor="b", now=T0, guard=ran.append)
    assert ran == []
    assert isinstance(refused.value, InvalidTransition)
    problem = problem_of(refused.value)
    assert problem.status == 409
    assert problem.extensions["allowed"] == []
    assert problem.errors == [
        {"in": "body", "field": "to", "detail": "allowed: none (final state)"}
    ]


def test_the_guard_refuses_a_legal_move_with_the_records_own_rule():
    def never(record: Ticket) -> None:
        raise Conflict(f"{record.reference} is frozen")

    with pytest.raises(Conflict, match="TCK7 is frozen"):
        transition(
            ticket(), MACHINE, "done", actor="b", now=T0, details={"notes": "x"}, guard=never
        )


def test_missing_details_are_a_422_naming_each_field_with_the_machines_hint():
    with pytest.raises(InvalidTransitionDetails) as refused:
        transition(ticket(), MACHINE, "done", actor="b", now=T0, details={"notes": " "})
    assert isinstance(refused.value, ValidationFailed) and isinstance(refused.value, ValueError)
    assert dict(refused.value.problems) == {"notes": "required to go from open to done"}
    assert "ticket: open to done: notes: required" in str(refused.value)
    problem = problem_of(refused.value)
    assert (problem.status, problem.detail) == (422, "invalid: notes")
    assert problem.type == "urn:itsm:problem:validation"
    assert problem.errors == [
        {
            "in": "body",
            "field": "notes",
            "detail": "required to go from open to done; say what was done",
        }
    ]


def test_an_unknown_state_is_a_422_naming_the_field_that_asked_for_it():
    with pytest.raises(UnknownState) as refused:
        MACHINE.state("lost")
    assert isinstance(refused.value, ValueError)
    problem = problem_of(refused.value)
    assert (problem.status, problem.errors[0]["field"]) == (422, "to")  # type: ignore[index]
    assert "'lost' is not a state" in str(refused.value)


def test_a_change_carries_its_record_changes_and_events():
    changed = Changed(ticket(), {}, [])
    assert changed.record.reference == "TCK7" and changed.events == []


def test_a_new_record_is_version_one_created_and_last_changed_by_its_author():
    made = Ticket.first(tenant_id="t1", state="open", actor="ann", now=T0, number=1, title="x")
    assert (made.version, made.state, made.tenant_id) == (1, "open", "t1")
    assert (made.created_at, made.created_by) == (made.updated_at, made.updated_by) == (T0, "ann")
    chosen = uuid.UUID(int=9)
    assert (
        Ticket.first(
            tenant_id="t1", state="open", actor="a", now=T0, id=chosen, number=1, title="x"
        ).id
        == chosen
    )
    assert (
        made.id
        != Ticket.first(tenant_id="t1", state="open", actor="a", now=T0, number=1, title="x").id
    )
