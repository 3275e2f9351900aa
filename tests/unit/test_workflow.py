"""Which state changes incidents, service requests and problems may make, and what each needs."""

import itertools
import re
from datetime import UTC, datetime

import pytest

from services.incident.domain import workflow
from services.incident.domain.workflow import (
    HOLD_REASONS,
    INCIDENT,
    PROBLEM,
    RESOLUTION_CODES,
    SERVICE_REQUEST,
    Approval,
    IllegalTransition,
    InvalidTransitionDetails,
    MajorReviewMissing,
    StateMachine,
    UnknownState,
    WorkflowError,
    check_incident_transition,
    check_major_review,
    check_problem_transition,
    check_request_transition,
    is_major,
    state_after_approval,
)

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)

# The specification, written out independently of the module's tables.
INCIDENT_MOVES = {
    "new": {"in_progress", "on_hold", "resolved", "cancelled"},
    "in_progress": {"on_hold", "resolved", "cancelled"},
    "on_hold": {"in_progress", "resolved", "cancelled"},
    "resolved": {"in_progress", "closed"},
    "closed": set(),
    "cancelled": set(),
}
REQUEST_MOVES = {
    "submitted": {"awaiting_approval", "in_fulfilment", "cancelled"},
    "awaiting_approval": {"in_fulfilment", "rejected", "cancelled"},
    "in_fulfilment": {"fulfilled", "cancelled"},
    "fulfilled": {"closed"},
    "closed": set(),
    "rejected": set(),
    "cancelled": set(),
}
PROBLEM_MOVES = {
    "new": {"investigating", "cancelled"},
    "investigating": {"known_error", "resolved", "cancelled"},
    "known_error": {"investigating", "resolved", "cancelled"},
    "resolved": {"investigating", "closed"},
    "closed": set(),
    "cancelled": set(),
}


def approved() -> Approval:
    return Approval(approver="alice", decision="approved", at=NOW)


def rejected() -> Approval:
    return Approval(approver="alice", decision="rejected", at=NOW, comment="not in budget")


def incident_details(wanted: str) -> dict[str, str]:
    """Valid details for a legal incident move to `wanted`."""
    if wanted == "on_hold":
        return {"hold_reason": "awaiting_customer"}
    if wanted == "resolved":
        return {"resolution_code": "solved_permanently", "resolution_notes": "Restarted the pool."}
    return {}


def request_details(current: str, wanted: str) -> dict[str, Approval]:
    if current == "awaiting_approval" and wanted == "in_fulfilment":
        return {"approval": approved()}
    if current == "awaiting_approval" and wanted == "rejected":
        return {"approval": rejected()}
    return {}


def problem_details(current: str, wanted: str) -> dict[str, str]:
    if wanted == "known_error":
        return {"root_cause": "Pool too small.", "workaround": "Restart the pool."}
    if (current, wanted) == ("investigating", "resolved"):
        return {"root_cause": "Pool too small.", "resolution_notes": "Pool resized by change."}
    if (current, wanted) == ("known_error", "resolved"):
        return {"resolution_notes": "Pool resized by change."}
    return {}


def grid(moves: dict[str, set[str]]) -> list[tuple[str, str]]:
    return list(itertools.product(moves, repeat=2))


# --- the tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "moves"),
    [(INCIDENT, INCIDENT_MOVES), (SERVICE_REQUEST, REQUEST_MOVES), (PROBLEM, PROBLEM_MOVES)],
    ids=["incident", "service request", "problem"],
)
def test_each_record_type_has_exactly_the_specified_states_and_moves(machine, moves):
    assert set(machine.states) == set(moves)
    assert {state: set(machine.allowed_from(state)) for state in machine.states} == moves


@pytest.mark.parametrize(
    ("machine", "section"),
    [(INCIDENT, "Incidents"), (SERVICE_REQUEST, "Service requests"), (PROBLEM, "Problems")],
    ids=["incident", "service request", "problem"],
)
def test_the_tables_in_the_module_documentation_match_the_rules(machine, section):
    doc = workflow.__doc__ or ""
    text = doc.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)`\s*\|\s*(.*?)\s*\|$", text, flags=re.MULTILINE)
    documented = {
        state: set() if targets == "(final)" else set(targets.split(", "))
        for state, targets in rows
    }
    assert documented == {state: set(machine.allowed_from(state)) for state in machine.states}


@pytest.mark.parametrize(("current", "wanted"), grid(INCIDENT_MOVES))
def test_an_incident_moves_exactly_as_the_table_says(current, wanted):
    if wanted in INCIDENT_MOVES[current]:
        check_incident_transition(current, wanted, **incident_details(wanted))
    else:
        with pytest.raises(IllegalTransition) as refused:
            check_incident_transition(current, wanted, **incident_details(wanted))
        assert refused.value.current == current
        assert refused.value.wanted == wanted
        assert refused.value.allowed == tuple(sorted(INCIDENT_MOVES[current]))


@pytest.mark.parametrize(("current", "wanted"), grid(REQUEST_MOVES))
def test_a_service_request_moves_exactly_as_the_table_says(current, wanted):
    if wanted in REQUEST_MOVES[current]:
        check_request_transition(current, wanted, **request_details(current, wanted))
    else:
        with pytest.raises(IllegalTransition) as refused:
            check_request_transition(current, wanted)
        assert (refused.value.current, refused.value.wanted) == (current, wanted)
        assert refused.value.allowed == tuple(sorted(REQUEST_MOVES[current]))


@pytest.mark.parametrize(("current", "wanted"), grid(PROBLEM_MOVES))
def test_a_problem_moves_exactly_as_the_table_says(current, wanted):
    if wanted in PROBLEM_MOVES[current]:
        check_problem_transition(current, wanted, **problem_details(current, wanted))
    else:
        with pytest.raises(IllegalTransition) as refused:
            check_problem_transition(current, wanted, **problem_details(current, wanted))
        assert (refused.value.current, refused.value.wanted) == (current, wanted)
        assert refused.value.allowed == tuple(sorted(PROBLEM_MOVES[current]))


def test_allowed_targets_are_sorted_by_name_for_the_409_body():
    assert INCIDENT.allowed_from("new") == ("cancelled", "in_progress", "on_hold", "resolved")
    assert INCIDENT.allowed_from("closed") == ()


def test_an_illegal_move_names_the_allowed_targets_in_its_message():
    with pytest.raises(IllegalTransition, match="allowed from resolved: closed, in_progress"):
        check_incident_transition("resolved", "on_hold", hold_reason="awaiting_vendor")


def test_a_move_out_of_a_final_state_says_the_state_is_final():
    with pytest.raises(IllegalTransition, match="closed is final") as refused:
        check_incident_transition("closed", "in_progress")
    assert refused.value.allowed == ()


def test_nothing_moves_to_the_state_it_is_in():
    for machine in (INCIDENT, SERVICE_REQUEST, PROBLEM):
        assert not any(machine.can(state, state) for state in machine.states)


def test_final_states_are_the_ones_nothing_leaves():
    assert set(INCIDENT.final_states) == {"closed", "cancelled"}
    assert set(SERVICE_REQUEST.final_states) == {"closed", "rejected", "cancelled"}
    assert set(PROBLEM.final_states) == {"closed", "cancelled"}


@pytest.mark.parametrize(("current", "wanted"), [("paused", "new"), ("new", "done"), ("", "new")])
def test_an_unknown_state_is_a_value_error_listing_the_states(current, wanted):
    with pytest.raises(UnknownState, match="the states are new, in_progress") as refused:
        check_incident_transition(current, wanted)
    assert isinstance(refused.value, ValueError)
    assert isinstance(refused.value, WorkflowError)


def test_allowed_from_an_unknown_state_is_refused():
    with pytest.raises(UnknownState):
        INCIDENT.allowed_from("open")


def test_an_illegal_move_is_reported_before_its_missing_details():
    with pytest.raises(IllegalTransition):
        check_incident_transition("closed", "resolved")


# --- incidents: details -----------------------------------------------------------------------


@pytest.mark.parametrize("current", ["new", "in_progress"])
def test_putting_an_incident_on_hold_needs_a_reason(current):
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_incident_transition(current, "on_hold")
    assert list(refused.value.problems) == ["hold_reason"]
    assert "required" in refused.value.problems["hold_reason"]


@pytest.mark.parametrize("reason", HOLD_REASONS)
def test_each_hold_reason_is_accepted(reason):
    check_incident_transition("in_progress", "on_hold", hold_reason=reason)


def test_the_hold_reasons_are_the_ones_sla_policies_may_pause_on():
    assert HOLD_REASONS == ("awaiting_customer", "awaiting_vendor", "awaiting_change")


@pytest.mark.parametrize("reason", ["lunch", "", "  ", "Awaiting_Customer"])
def test_a_hold_reason_outside_the_list_is_refused(reason):
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_incident_transition("in_progress", "on_hold", hold_reason=reason)
    assert list(refused.value.problems) == ["hold_reason"]


@pytest.mark.parametrize("current", ["new", "in_progress", "on_hold"])
def test_resolving_an_incident_needs_a_resolution_code_and_notes(current):
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_incident_transition(current, "resolved")
    assert list(refused.value.problems) == ["resolution_code", "resolution_notes"]


@pytest.mark.parametrize("code", RESOLUTION_CODES)
def test_each_resolution_code_is_accepted(code):
    check_incident_transition("in_progress", "resolved", resolution_code=code, resolution_notes="x")


def test_blank_resolution_notes_are_missing_notes():
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_incident_transition(
            "in_progress", "resolved", resolution_code="not_reproducible", resolution_notes=" \n"
        )
    assert list(refused.value.problems) == ["resolution_notes"]


def test_every_problem_with_the_details_is_reported_at_once():
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_incident_transition(
            "in_progress", "resolved", resolution_code="fixed", hold_reason="awaiting_vendor"
        )
    assert set(refused.value.problems) == {"resolution_code", "resolution_notes", "hold_reason"}
    assert "must be one of solved_permanently" in refused.value.problems["resolution_code"]
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    ("current", "wanted", "details"),
    [
        ("new", "in_progress", {"hold_reason": "awaiting_customer"}),
        ("on_hold", "in_progress", {"hold_reason": "awaiting_customer"}),
        ("in_progress", "on_hold", {"hold_reason": "awaiting_vendor", "resolution_notes": "x"}),
        ("resolved", "closed", {"resolution_code": "solved_permanently"}),
        ("new", "cancelled", {"resolution_notes": "duplicate of INC-7"}),
    ],
)
def test_a_detail_the_move_does_not_take_is_refused_not_dropped(current, wanted, details):
    with pytest.raises(InvalidTransitionDetails, match="not taken by the move"):
        check_incident_transition(current, wanted, **details)


def test_a_resolved_incident_can_be_reopened_and_resolved_again():
    check_incident_transition("resolved", "in_progress")
    check_incident_transition(
        "in_progress", "resolved", resolution_code="solved_workaround", resolution_notes="Again."
    )


def test_a_closed_incident_is_never_reopened():
    assert INCIDENT.allowed_from("closed") == ()


def test_an_incident_is_closed_only_after_it_is_resolved():
    assert [s for s in INCIDENT.states if INCIDENT.can(s, "closed")] == ["resolved"]


def test_an_incident_can_be_cancelled_until_it_is_resolved():
    assert {s for s in INCIDENT.states if INCIDENT.can(s, "cancelled")} == {
        "new",
        "in_progress",
        "on_hold",
    }


# --- major incidents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "flagged", "major"),
    [(1, False, True), (1, True, True), (2, True, True), (5, True, True), (2, False, False)],
)
def test_an_incident_is_major_when_priority_1_or_flagged(priority, flagged, major):
    assert is_major(priority, flagged=flagged) is major


@pytest.mark.parametrize("priority", [0, 6, True])
def test_majority_is_only_judged_for_priorities_1_to_5(priority):
    with pytest.raises(ValueError, match="priority must be 1 to 5"):
        is_major(priority, flagged=False)


@pytest.mark.parametrize(("priority", "flagged"), [(1, False), (3, True)])
def test_a_major_incident_cannot_be_closed_without_its_review(priority, flagged):
    with pytest.raises(MajorReviewMissing, match="until its review is recorded"):
        check_major_review(priority=priority, flagged=flagged, review_recorded=False)


def test_a_major_incident_with_its_review_recorded_can_be_closed():
    check_major_review(priority=1, flagged=True, review_recorded=True)


def test_an_incident_that_is_not_major_needs_no_review_to_close():
    check_major_review(priority=2, flagged=False, review_recorded=False)


def test_the_review_refusal_says_why_the_incident_is_major():
    with pytest.raises(MajorReviewMissing, match="flagged major"):
        check_major_review(priority=3, flagged=True, review_recorded=False)
    with pytest.raises(MajorReviewMissing, match="priority 1"):
        check_major_review(priority=1, flagged=False, review_recorded=False)


# --- service requests -------------------------------------------------------------------------


def test_a_request_needing_approval_goes_through_approval_fulfilment_and_closure():
    check_request_transition("submitted", "awaiting_approval")
    assert state_after_approval("awaiting_approval", approved()) == "in_fulfilment"
    check_request_transition("in_fulfilment", "fulfilled")
    check_request_transition("fulfilled", "closed")


def test_a_request_needing_no_approval_goes_straight_to_fulfilment():
    check_request_transition("submitted", "in_fulfilment")


def test_a_rejected_request_is_final():
    assert state_after_approval("awaiting_approval", rejected()) == "rejected"
    assert SERVICE_REQUEST.allowed_from("rejected") == ()


@pytest.mark.parametrize("wanted", ["in_fulfilment", "rejected"])
def test_leaving_approval_needs_the_approval(wanted):
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_request_transition("awaiting_approval", wanted)
    assert list(refused.value.problems) == ["approval"]


@pytest.mark.parametrize(
    ("wanted", "approval"), [("in_fulfilment", rejected), ("rejected", approved)]
)
def test_the_approval_decision_must_match_the_move(wanted, approval):
    with pytest.raises(InvalidTransitionDetails, match="so the request goes to"):
        check_request_transition("awaiting_approval", wanted, approval=approval())


@pytest.mark.parametrize(
    ("current", "wanted"),
    [("submitted", "in_fulfilment"), ("awaiting_approval", "cancelled")],
)
def test_an_approval_is_refused_where_no_decision_is_due(current, wanted):
    with pytest.raises(InvalidTransitionDetails, match="not taken by the move"):
        check_request_transition(current, wanted, approval=approved())


@pytest.mark.parametrize("current", ["in_fulfilment", "fulfilled", "closed"])
def test_a_decision_on_a_request_past_approval_is_illegal(current):
    with pytest.raises(IllegalTransition):
        state_after_approval(current, approved())


def test_a_decision_on_a_request_that_was_never_sent_for_approval_is_refused():
    with pytest.raises(InvalidTransitionDetails, match="approval: not taken by the move"):
        state_after_approval("submitted", approved())


def test_a_request_can_be_cancelled_until_it_is_fulfilled():
    assert {s for s in SERVICE_REQUEST.states if SERVICE_REQUEST.can(s, "cancelled")} == {
        "submitted",
        "awaiting_approval",
        "in_fulfilment",
    }


def test_an_approval_keeps_who_decided_what_when_and_why():
    approval = Approval(approver="bob", decision="approved", at=NOW, comment="fine")
    assert (approval.approver, approval.decision, approval.at, approval.comment) == (
        "bob",
        "approved",
        NOW,
        "fine",
    )
    with pytest.raises(AttributeError):
        approval.decision = "rejected"  # type: ignore[misc]


def test_an_approval_without_a_comment_is_allowed():
    assert approved().comment == ""


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"approver": " "}, "needs its approver"),
        ({"decision": "maybe"}, "approved or rejected"),
        ({"at": datetime(2025, 3, 4, 10, 30)}, "timezone-aware"),
        ({"decision": "rejected", "comment": ""}, "rejection needs a comment"),
    ],
)
def test_an_incomplete_approval_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Approval(**{"approver": "alice", "decision": "approved", "at": NOW, **fields})


# --- problems and known errors ----------------------------------------------------------------


def test_a_problem_becomes_a_known_error_and_then_resolved_and_closed():
    check_problem_transition("new", "investigating")
    check_problem_transition(
        "investigating", "known_error", root_cause="Pool too small.", workaround="Restart."
    )
    check_problem_transition("known_error", "resolved", resolution_notes="Resized by CHG-12.")
    check_problem_transition("resolved", "closed")


def test_a_known_error_needs_root_cause_and_workaround():
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_problem_transition("investigating", "known_error", root_cause="  ")
    assert list(refused.value.problems) == ["root_cause", "workaround"]


def test_a_problem_resolved_without_becoming_a_known_error_needs_its_root_cause():
    with pytest.raises(InvalidTransitionDetails) as refused:
        check_problem_transition("investigating", "resolved", resolution_notes="Fixed.")
    assert list(refused.value.problems) == ["root_cause"]


def test_a_known_error_is_resolved_with_notes_its_root_cause_being_recorded():
    with pytest.raises(InvalidTransitionDetails) as missing:
        check_problem_transition("known_error", "resolved")
    assert list(missing.value.problems) == ["resolution_notes"]
    with pytest.raises(InvalidTransitionDetails, match="not taken by the move"):
        check_problem_transition(
            "known_error", "resolved", root_cause="Other.", resolution_notes="Fixed."
        )


@pytest.mark.parametrize("current", ["known_error", "resolved"])
def test_a_wrong_root_cause_or_a_recurrence_sends_a_problem_back_to_investigation(current):
    check_problem_transition(current, "investigating")


def test_a_problem_can_be_cancelled_until_it_is_resolved():
    assert {s for s in PROBLEM.states if PROBLEM.can(s, "cancelled")} == {
        "new",
        "investigating",
        "known_error",
    }


# --- the generic state machine ----------------------------------------------------------------


def test_a_table_that_moves_to_an_undefined_state_is_refused():
    with pytest.raises(ValueError, match="undefined states done"):
        StateMachine("thing", {"open": frozenset({"done"})})


def test_details_can_only_be_required_for_moves_in_the_table():
    with pytest.raises(ValueError, match="non-moves b->a"):
        StateMachine(
            "thing",
            {"a": frozenset({"b"}), "b": frozenset()},
            {("b", "a"): ("why",)},
        )


def test_a_machine_cannot_be_changed_after_it_is_built():
    transitions = {"a": frozenset({"b"}), "b": frozenset()}
    machine = StateMachine("thing", transitions)
    transitions["b"] = frozenset({"a"})
    assert not machine.can("b", "a")
    with pytest.raises(TypeError):
        machine.transitions["b"] = frozenset({"a"})  # type: ignore[index]
    with pytest.raises(AttributeError):
        machine.record = "other"  # type: ignore[misc]


def test_the_machine_reports_which_details_a_move_needs():
    assert INCIDENT.required("in_progress", "resolved") == ("resolution_code", "resolution_notes")
    assert INCIDENT.required("on_hold", "in_progress") == ()
