"""Each refusal of an incident, request or problem is a typed error that the one mapping at the
HTTP edge answers with the status, `errors[]` and `allowed` the endpoints used to build by hand
(issue 18: the 8 endpoints no longer translate WorkflowError themselves)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.incident.domain import problem as problems
from services.incident.domain import request as requests
from services.incident.domain import workflow
from shared.errors import DomainError
from shared.http.problems import problem_of

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def answer(exc: DomainError) -> tuple[int, list[dict[str, str]] | None, dict[str, object]]:
    problem = problem_of(exc)
    return problem.status, problem.errors, problem.extensions


def a_request(
    state: str = "awaiting_approval", approvers: tuple[str, ...] = ()
) -> requests.ServiceRequest:
    submitted, _ = requests.submit(
        tenant_id="t1",
        number=1,
        title="laptop",
        description="",
        actor="sub",
        now=T0,
        requested_for="req",
        approvers=approvers or ("boss",),
    )
    return replace(submitted, state=state)


def test_every_workflow_refusal_is_a_typed_error_the_edge_maps():
    assert issubclass(workflow.WorkflowError, DomainError)


def test_an_illegal_move_is_409_naming_to_with_the_allowed_states():
    with pytest.raises(workflow.IllegalTransition) as refused:
        workflow.check_incident_transition("closed", "new")
    status, errors, extensions = answer(refused.value)
    assert status == 409
    assert errors == [{"in": "body", "field": "to", "detail": "allowed: none (final state)"}]
    assert extensions == {"allowed": []}


def test_closing_a_major_incident_without_its_review_is_409_naming_to():
    with pytest.raises(workflow.MajorReviewMissing) as refused:
        workflow.check_major_review(priority=1, flagged=False, review_recorded=False)
    status, errors, _ = answer(refused.value)
    assert status == 409
    assert errors == [{"in": "body", "field": "to", "detail": "record the major-incident review"}]


def test_leaving_awaiting_approval_by_a_plain_move_is_422_pointing_at_the_approvals():
    with pytest.raises(workflow.InvalidTransitionDetails) as refused:
        requests.transition(a_request(), "in_fulfilment", actor="agent", now=T0)
    status, errors, _ = answer(refused.value)
    assert status == 422
    assert errors == [
        {
            "in": "body",
            "field": "approval",
            "detail": "required to go from awaiting_approval to in_fulfilment"
            "; decide with POST /requests/{id}/approvals",
        }
    ]


@pytest.mark.parametrize(
    ("approver", "state", "status"),
    [
        ("req", "awaiting_approval", 403),
        ("stranger", "awaiting_approval", 403),
        ("boss", "submitted", 409),
    ],
)
def test_refused_decisions_name_the_decision_with_their_status(approver, state, status):
    with pytest.raises(workflow.WorkflowError) as refused:
        requests.decide(a_request(state), approver=approver, decision="approved", now=T0)
    got, errors, _ = answer(refused.value)
    assert got == status
    assert errors == [{"in": "body", "field": "decision", "detail": str(refused.value)}]


def test_a_second_decision_by_one_approver_is_409():
    first = workflow.Approval("boss", "approved", T0)
    with pytest.raises(requests.AlreadyDecided) as refused:
        requests.decide(
            a_request(approvers=("boss", "cfo")),
            approver="boss",
            decision="approved",
            now=T0,
            recorded=[first],
        )
    assert answer(refused.value)[0] == 409


def test_a_problem_in_the_wrong_state_is_409_naming_the_problem_in_the_path():
    opened, _ = problems.open_problem(
        tenant_id="t1", number=1, title="disk", description="", actor="pm", now=T0
    )
    closed = replace(opened, state="closed")
    with pytest.raises(problems.WrongProblemState) as refused:
        problems.link_incident(closed, uuid.uuid4(), actor="pm", now=T0)
    status, errors, _ = answer(refused.value)
    assert status == 409
    assert errors == [{"in": "path", "field": "problem_id", "detail": "the problem is closed"}]
