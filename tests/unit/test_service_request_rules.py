"""Service requests, the pure rules: submission, moves, decisions and segregation of duties."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.incident.domain import request as domain
from services.incident.domain.priority import PriorityCell, PriorityMatrix
from services.incident.domain.request import (
    AlreadyDecided,
    InvalidRequest,
    NoDecisionDue,
    NotAnApprover,
    SelfApproval,
    ServiceRequest,
)
from services.incident.domain.workflow import Approval, IllegalTransition, InvalidTransitionDetails
from shared.events.catalogue import (
    RequestApprovalRecordedV1,
    RequestSubmittedV1,
    RequestTransitionedV1,
)

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def submitted(**fields: object) -> ServiceRequest:
    values: dict[str, object] = {
        "tenant_id": "t1",
        "number": 7,
        "title": "New laptop",
        "description": "for the new starter",
        "actor": "ann",
        "now": NOW,
    }
    request, _ = domain.submit(**{**values, **fields})  # type: ignore[arg-type]
    return request


def awaiting(**fields: object) -> ServiceRequest:
    request = submitted(needs_approval=True, **fields)
    routed = domain.route_for_approval(request, now=NOW)
    assert routed is not None
    return routed.request


# --- submission -------------------------------------------------------------------------------


def test_a_submitted_request_is_numbered_prioritised_and_announced():
    request, events = domain.submit(
        tenant_id="t1",
        number=7,
        title="New laptop",
        description="",
        actor="ann",
        now=NOW,
        impact=2,
        urgency=3,
        item="Laptop",
        service="svc-1",
        sla_policy="gold",
    )
    assert (request.state, request.version, request.reference) == ("submitted", 1, "REQ7")
    assert request.priority == 4
    assert request.requester == "ann" and request.created_by == "ann"
    assert events == [
        RequestSubmittedV1(
            title="New laptop",
            description="",
            requester="ann",
            item="Laptop",
            service="svc-1",
            priority=4,
            needs_approval=False,
            sla_policy="gold",
            number=7,
            impact=2,
            urgency=3,
        )
    ]


def test_priority_comes_from_the_tenants_matrix():
    cells = [
        PriorityCell(impact=i, urgency=u, priority=1 if (i, u) == (1, 1) else 5)
        for i in (1, 2, 3)
        for u in (1, 2, 3)
    ]
    matrix = PriorityMatrix(cells=cells)
    assert submitted(impact=2, urgency=2, matrix=matrix).priority == 5
    assert submitted(impact=2, urgency=2).priority == 3


def test_a_request_made_for_someone_else_names_them_as_requester_and_keeps_the_submitter():
    request = submitted(requested_for="bob")
    assert (request.requester, request.created_by) == ("bob", "ann")
    assert request.involves("bob") and request.involves("ann")
    assert not request.involves("carol")


def test_naming_approvers_means_the_request_needs_approval():
    request = submitted(approvers=["carol", " dave ", "carol", ""])
    assert request.needs_approval is True
    assert request.approvers == ("carol", "dave")
    assert submitted().needs_approval is False


def test_approvers_for_a_request_said_to_need_none_are_refused():
    with pytest.raises(InvalidRequest) as refused:
        submitted(needs_approval=False, approvers=["carol"])
    assert set(refused.value.problems) == {"approvers"}


@pytest.mark.parametrize("approver", ["ann", "bob"])
def test_the_requester_or_the_submitter_cannot_be_named_approver(approver):
    with pytest.raises(InvalidRequest, match="segregation of duties") as refused:
        submitted(requested_for="bob", approvers=["carol", approver])
    assert set(refused.value.problems) == {"approvers"}


def test_a_request_that_needs_approval_is_sent_for_it_by_its_submitter():
    request = submitted(needs_approval=True)
    routed = domain.route_for_approval(request, now=LATER)
    assert routed is not None
    assert (routed.request.state, routed.request.version) == ("awaiting_approval", 2)
    assert routed.request.updated_by == "ann"
    assert routed.events == [
        RequestTransitionedV1(from_state="submitted", to_state="awaiting_approval", automatic=True)
    ]
    assert routed.changes == {"state": {"from": "submitted", "to": "awaiting_approval"}}


def test_a_request_that_needs_no_approval_waits_in_submitted_for_fulfilment():
    assert domain.route_for_approval(submitted(), now=NOW) is None


# --- moves ------------------------------------------------------------------------------------


def test_fulfilment_runs_from_submitted_to_closed_keeping_notes_and_who_closed():
    request = submitted()
    started = domain.transition(request, "in_fulfilment", actor="eve", now=NOW).request
    done = domain.transition(
        started, "fulfilled", actor="eve", now=LATER, notes=" laptop handed over "
    )
    assert done.request.fulfilment_notes == "laptop handed over"
    assert done.request.fulfilled_at == LATER
    assert done.events == [
        RequestTransitionedV1(
            from_state="in_fulfilment", to_state="fulfilled", notes="laptop handed over"
        )
    ]
    closed = domain.transition(done.request, "closed", actor="frank", now=LATER).request
    assert (closed.state, closed.version) == ("closed", 4)
    assert (closed.closed_at, closed.closed_by) == (LATER, "frank")


@pytest.mark.parametrize("notes", [None, "", "   "])
def test_fulfilling_needs_notes_saying_what_was_done(notes):
    started = domain.transition(submitted(), "in_fulfilment", actor="eve", now=NOW).request
    with pytest.raises(InvalidTransitionDetails) as refused:
        domain.transition(started, "fulfilled", actor="eve", now=LATER, notes=notes)
    assert set(refused.value.problems) == {"notes"}


def test_an_illegal_move_names_the_allowed_ones():
    with pytest.raises(IllegalTransition) as refused:
        domain.transition(submitted(), "fulfilled", actor="eve", now=NOW)
    assert refused.value.allowed == ("awaiting_approval", "cancelled", "in_fulfilment")


def test_leaving_approval_by_a_plain_move_is_refused_naming_the_approval():
    with pytest.raises(InvalidTransitionDetails) as refused:
        domain.transition(awaiting(), "in_fulfilment", actor="eve", now=NOW)
    assert set(refused.value.problems) == {"approval"}


def test_a_request_awaiting_approval_can_be_withdrawn():
    cancelled = domain.transition(awaiting(), "cancelled", actor="eve", now=NOW, notes="no need")
    assert cancelled.request.state == "cancelled"
    assert cancelled.changes == {"state": {"from": "awaiting_approval", "to": "cancelled"}}


# --- decisions --------------------------------------------------------------------------------


def test_one_approval_starts_fulfilment_and_is_recorded_with_approver_and_time():
    change = domain.decide(awaiting(), approver="carol", decision="approved", now=LATER)
    assert (change.request.state, change.request.version) == ("in_fulfilment", 3)
    assert change.request.updated_by == "carol"
    assert change.approval == Approval(approver="carol", decision="approved", at=LATER)
    assert change.events == [
        RequestApprovalRecordedV1(approver="carol", decision="approved", at=LATER, comment=""),
        RequestTransitionedV1(from_state="awaiting_approval", to_state="in_fulfilment"),
    ]
    assert change.changes["approval"]["to"]["approver"] == "carol"
    assert change.changes["state"] == {"from": "awaiting_approval", "to": "in_fulfilment"}


def test_a_rejection_with_its_reason_rejects_the_request():
    change = domain.decide(
        awaiting(), approver="carol", decision="rejected", now=LATER, comment="over budget"
    )
    assert change.request.state == "rejected"
    assert change.approval is not None and change.approval.comment == "over budget"
    assert [type(e) for e in change.events] == [RequestApprovalRecordedV1, RequestTransitionedV1]


@pytest.mark.parametrize("comment", ["", "  "])
def test_a_rejection_needs_a_comment(comment):
    with pytest.raises(InvalidTransitionDetails) as refused:
        domain.decide(awaiting(), approver="carol", decision="rejected", now=NOW, comment=comment)
    assert set(refused.value.problems) == {"comment"}


@pytest.mark.parametrize("who", ["ann", "bob"])
def test_neither_the_requester_nor_the_submitter_may_decide(who):
    request = awaiting(requested_for="bob")
    with pytest.raises(SelfApproval, match="segregation of duties"):
        domain.decide(request, approver=who, decision="approved", now=NOW)


def test_only_a_named_approver_may_decide():
    with pytest.raises(NotAnApprover):
        domain.decide(
            awaiting(approvers=["carol"]), approver="mallory", decision="approved", now=NOW
        )


def test_with_named_approvers_all_must_approve_before_fulfilment():
    request = awaiting(approvers=["carol", "dave"])
    first = domain.decide(request, approver="carol", decision="approved", now=NOW)
    assert (first.request.state, first.request.version) == ("awaiting_approval", 3)
    assert [type(e) for e in first.events] == [RequestApprovalRecordedV1]
    assert "state" not in first.changes
    assert first.approval is not None
    second = domain.decide(
        first.request, approver="dave", decision="approved", now=LATER, recorded=[first.approval]
    )
    assert second.request.state == "in_fulfilment"


def test_with_named_approvers_one_rejection_rejects():
    request = awaiting(approvers=["carol", "dave"])
    change = domain.decide(request, approver="dave", decision="rejected", now=NOW, comment="no")
    assert change.request.state == "rejected"


def test_an_approver_decides_once():
    request = awaiting(approvers=["carol", "dave"])
    first = domain.decide(request, approver="carol", decision="approved", now=NOW)
    assert first.approval is not None
    with pytest.raises(AlreadyDecided, match="approved"):
        domain.decide(
            first.request,
            approver="carol",
            decision="rejected",
            now=LATER,
            comment="changed my mind",
            recorded=[first.approval],
        )


@pytest.mark.parametrize("state", ["submitted", "in_fulfilment", "fulfilled", "rejected"])
def test_no_decision_is_taken_on_a_request_not_awaiting_approval(state):
    request = replace(submitted(needs_approval=True), state=state)
    with pytest.raises(NoDecisionDue, match=state):
        domain.decide(request, approver="carol", decision="approved", now=NOW)


def test_the_state_is_checked_before_who_decides():
    request = replace(submitted(needs_approval=True), state="fulfilled")
    with pytest.raises(NoDecisionDue):
        domain.decide(request, approver="ann", decision="approved", now=NOW)
