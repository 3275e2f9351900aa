"""The problem aggregate: opening, moves, known errors, incident links and change requests."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.incident.domain import problem as domain
from services.incident.domain.problem import Problem, WrongProblemState
from services.incident.domain.workflow import IllegalTransition, InvalidTransitionDetails
from shared.events.catalogue import (
    KnownErrorPublishedV1,
    ProblemChangeRequestedV1,
    ProblemCreatedV1,
    ProblemIncidentLinkedV1,
    ProblemTransitionedV1,
)

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
CI = uuid.UUID("00000000-0000-0000-0000-0000000000c1")


def opened(**fields) -> Problem:
    problem, _ = domain.open_problem(
        tenant_id="t1",
        number=7,
        title="Payroll DB deadlocks",
        description="",
        actor="pat",
        now=NOW,
        ci_id=CI,
        **fields,
    )
    return problem


def moved(problem: Problem, *steps: tuple[str, dict[str, str]]) -> Problem:
    for to, details in steps:
        problem = domain.transition(problem, to, actor="pat", now=LATER, **details).problem
    return problem


INVESTIGATING = ("investigating", {})
KNOWN = ("known_error", {"root_cause": "lock order", "workaround": "restart the batch"})


def test_a_new_problem_is_version_1_in_state_new_announced_with_its_incidents_once_each():
    incidents = [uuid.uuid4(), uuid.uuid4()]
    problem, events = domain.open_problem(
        tenant_id="t1",
        number=3,
        title="Disk fills up",
        description="every night",
        actor="pat",
        now=NOW,
        service="svc-payroll",
        incidents=[*incidents, incidents[0]],
    )
    assert (problem.state, problem.version, problem.number) == ("new", 1, 3)
    assert problem.incidents == tuple(incidents)
    assert problem.known_error_id is None
    assert events == [
        ProblemCreatedV1(
            title="Disk fills up",
            description="every night",
            service="svc-payroll",
            origin="manual",
            incidents=[str(i) for i in incidents],
            number=3,
        )
    ]


def test_a_problem_keeps_the_id_chosen_for_it():
    chosen = uuid.uuid4()
    assert opened(problem_id=chosen).id == chosen


def test_a_blank_title_is_refused():
    with pytest.raises(ValueError, match="title"):
        domain.open_problem(tenant_id="t1", number=1, title=" ", description="", actor="a", now=NOW)


def test_entering_known_error_publishes_the_known_error_under_the_problems_id():
    problem = moved(opened(), INVESTIGATING)
    change = domain.transition(problem, "known_error", actor="pat", now=LATER, **KNOWN[1])
    after = change.problem
    assert after.state == "known_error"
    assert after.version == problem.version + 1
    assert after.known_error_id == problem.id
    assert after.known_error_published_at == LATER
    assert change.events == [
        ProblemTransitionedV1(
            from_state="investigating", to_state="known_error", root_cause="lock order"
        ),
        KnownErrorPublishedV1(
            known_error_id=str(problem.id),
            title="Payroll DB deadlocks",
            root_cause="lock order",
            workaround="restart the batch",
            ci_id=str(CI),
        ),
    ]
    assert change.changes["workaround"] == {"from": None, "to": "restart the batch"}


@pytest.mark.parametrize("missing", ["root_cause", "workaround"])
def test_publishing_a_known_error_needs_root_cause_and_workaround_naming_the_missing_one(missing):
    problem = moved(opened(), INVESTIGATING)
    details = {**KNOWN[1], missing: "  "}
    with pytest.raises(InvalidTransitionDetails) as caught:
        domain.publish_known_error(problem, actor="pat", now=LATER, **details)
    assert set(caught.value.problems) == {missing}


def test_a_new_problem_cannot_be_published_before_it_is_investigated():
    with pytest.raises(IllegalTransition) as caught:
        domain.publish_known_error(opened(), root_cause="x", workaround="y", actor="pat", now=LATER)
    assert caught.value.allowed == ("cancelled", "investigating")


def test_a_known_error_can_be_revised_without_a_move_and_is_published_again():
    known = moved(opened(), INVESTIGATING, KNOWN)
    revised = domain.publish_known_error(
        known, root_cause="lock order", workaround="run it at 3am", actor="pat", now=LATER
    )
    assert revised.problem.state == "known_error"
    assert revised.problem.version == known.version + 1
    assert list(revised.changes) == ["workaround"]
    assert [type(e) for e in revised.events] == [KnownErrorPublishedV1]
    same = domain.publish_known_error(
        revised.problem, root_cause="lock order", workaround="run it at 3am", actor="p", now=LATER
    )
    assert same.events == [] and same.problem is revised.problem


def test_resolving_records_the_notes_and_reopening_clears_them():
    resolved = moved(
        opened(), INVESTIGATING, KNOWN, ("resolved", {"resolution_notes": "index added"})
    )
    assert resolved.resolution_notes == "index added" and resolved.resolved_at == LATER
    reopened = moved(resolved, INVESTIGATING)
    assert reopened.resolution_notes is None and reopened.resolved_at is None
    assert reopened.root_cause == "lock order"


def test_resolving_straight_from_investigation_needs_the_root_cause():
    problem = moved(opened(), INVESTIGATING)
    with pytest.raises(InvalidTransitionDetails) as caught:
        domain.transition(problem, "resolved", actor="p", now=LATER, resolution_notes="fixed")
    assert set(caught.value.problems) == {"root_cause"}


def test_an_illegal_move_names_the_allowed_ones():
    with pytest.raises(IllegalTransition) as caught:
        domain.transition(opened(), "closed", actor="p", now=LATER)
    assert caught.value.allowed == ("cancelled", "investigating")


def test_closing_stamps_the_time_and_nothing_leaves_closed():
    closed = moved(
        opened(),
        INVESTIGATING,
        KNOWN,
        ("resolved", {"resolution_notes": "fixed"}),
        ("closed", {}),
    )
    assert closed.closed_at == LATER and not closed.is_open
    with pytest.raises(IllegalTransition):
        domain.transition(closed, "investigating", actor="p", now=LATER)


def test_linking_an_incident_bumps_the_version_and_linking_it_again_changes_nothing():
    problem = opened()
    incident = uuid.uuid4()
    change = domain.link_incident(problem, incident, actor="al", now=LATER)
    assert change.problem.incidents == (incident,)
    assert change.problem.version == 2 and change.problem.updated_by == "al"
    assert change.events == [ProblemIncidentLinkedV1(incident_id=str(incident))]
    again = domain.link_incident(change.problem, incident, actor="al", now=LATER)
    assert again.events == [] and again.problem is change.problem


@pytest.mark.parametrize("final", ["closed", "cancelled"])
def test_a_closed_or_cancelled_problem_takes_no_more_incidents(final):
    problem = moved(opened(), ("cancelled", {}))
    if final == "closed":
        problem = moved(
            opened(),
            INVESTIGATING,
            KNOWN,
            ("resolved", {"resolution_notes": "fixed"}),
            ("closed", {}),
        )
    with pytest.raises(WrongProblemState):
        domain.link_incident(problem, uuid.uuid4(), actor="al", now=LATER)


def test_a_change_request_carries_the_trail_incidents_problem_known_error():
    incidents = [uuid.uuid4(), uuid.uuid4()]
    known = moved(opened(incidents=incidents), INVESTIGATING, KNOWN)
    request = uuid.uuid4()
    change = domain.request_change(
        known, request_id=request, title="Add index", description="", actor="pat", now=LATER
    )
    assert change.problem.change_requests == (request,)
    assert change.events == [
        ProblemChangeRequestedV1(
            request_id=str(request),
            title="Add index",
            description="",
            ci_ids=[str(CI)],
            known_error_id=str(known.id),
            incidents=[str(i) for i in incidents],
        )
    ]


def test_a_change_request_names_the_cis_given_instead_of_the_problems_and_keeps_earlier_ones():
    other = uuid.uuid4()
    first = domain.request_change(
        opened(), request_id=uuid.uuid4(), title="a", description="", actor="p", now=LATER
    ).problem
    change = domain.request_change(
        first,
        request_id=uuid.uuid4(),
        title="b",
        description="",
        ci_ids=[other, other],
        actor="p",
        now=LATER,
    )
    event = change.events[0]
    assert isinstance(event, ProblemChangeRequestedV1)
    assert event.ci_ids == [str(other)]
    assert event.known_error_id is None
    assert len(change.problem.change_requests) == 2


def test_a_resolved_problem_requests_no_change():
    resolved = moved(opened(), INVESTIGATING, KNOWN, ("resolved", {"resolution_notes": "fixed"}))
    with pytest.raises(WrongProblemState):
        domain.request_change(
            resolved, request_id=uuid.uuid4(), title="a", description="", actor="p", now=LATER
        )
