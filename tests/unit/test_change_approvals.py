"""Approval policies and decisions (domain, pure): matching a decision table, quorum
arithmetic, segregation of duties, decisions void once the content changes, and deadlines that
escalate and never approve."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.change.domain.approvals import (
    FALLBACK_STEP,
    ApprovalPolicies,
    Approvers,
    Decision,
    Party,
    PolicyRow,
    Step,
    StepSpec,
    check_decider,
    escalate,
    next_pending,
    open_round,
    overdue,
    settle,
    status_of,
    step_outcome,
    steps_for,
)
from shared.errors import Conflict, Forbidden

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
CHANGE = uuid.UUID("00000000-0000-0000-0000-00000000c0de")
HASH = "a" * 64
PARTY = Party(requester="rita", implementer="ivan", assignment_group="dba")
GROUPS = {"dba": ("dora", "dan", "ivan")}


def _step(quorum: str = "any", n: int | None = None, **approvers: object) -> Step:
    spec = StepSpec(
        name="cab",
        approvers=Approvers(**approvers),  # type: ignore[arg-type]
        quorum=quorum,  # type: ignore[arg-type]
        n=n,
        deadline=timedelta(hours=8),
    )
    (step,) = open_round(
        tenant_id="t1", change_id=CHANGE, round=1, specs=[spec], content_hash=HASH, now=NOW
    )
    return step


def _decision(step: Step, who: str, decision: str = "approve", content_hash: str = HASH):
    return Decision(uuid.uuid4(), step.id, CHANGE, who, decision, "", content_hash, NOW)


# --- policies ---------------------------------------------------------------------------------


def test_default_policies_normal_technical_then_cab_emergency_ecab_standard_none():
    policies = ApprovalPolicies.default()
    assert [s.name for s in steps_for(policies, "normal", "low")[1]] == ["technical", "cab"]
    assert [s.name for s in steps_for(policies, "emergency", None)[1]] == ["ecab"]
    assert steps_for(policies, "standard", None)[1] == ()


def test_the_first_row_matching_type_and_risk_level_wins():
    quick = StepSpec(
        name="technical", approvers=Approvers(roles=("change_manager",)), deadline=timedelta(1)
    )
    board = StepSpec(name="cab", approvers=Approvers(roles=("cab_member",)), deadline=timedelta(2))
    policies = ApprovalPolicies(
        rows=(
            PolicyRow(name="high", types=("normal",), risk_levels=("high",), steps=(quick, board)),
            PolicyRow(name="other normal", types=("normal",), steps=(quick,)),
        )
    )
    assert steps_for(policies, "normal", "high") == ("high", (quick, board))
    assert steps_for(policies, "normal", "low") == ("other normal", (quick,))
    assert steps_for(policies, "normal", None) == ("other normal", (quick,))


def test_a_normal_change_no_row_matches_or_a_row_without_steps_still_needs_an_approver():
    empty = ApprovalPolicies(rows=(PolicyRow(name="nothing", types=("normal",)),))
    assert steps_for(empty, "normal", "low") == ("nothing", (FALLBACK_STEP,))
    assert steps_for(empty, "emergency", "low") == (None, (FALLBACK_STEP,))


def test_a_step_without_approvers_or_an_n_of_m_without_n_is_refused():
    with pytest.raises(ValidationError, match="needs approvers"):
        StepSpec(name="cab", approvers=Approvers(), deadline=timedelta(hours=1))
    with pytest.raises(ValidationError, match="needs n"):
        StepSpec(
            name="cab",
            approvers=Approvers(roles=("cab_member",)),
            quorum="n_of_m",
            deadline=timedelta(hours=1),
        )
    with pytest.raises(ValidationError, match="known list of people"):
        StepSpec(
            name="cab",
            approvers=Approvers(roles=("cab_member",)),
            quorum="all",
            deadline=timedelta(hours=1),
        )


# --- quorum -----------------------------------------------------------------------------------


def test_any_completes_on_the_first_approval():
    step = _step(roles=("cab_member",))
    assert step_outcome(step, [], HASH, PARTY, GROUPS) == "pending"
    assert step_outcome(step, [_decision(step, "carl")], HASH, PARTY, GROUPS) == "approved"


def test_n_of_m_needs_n_distinct_approvers():
    step = _step("n_of_m", 2, users=("carl", "cora", "cy"))
    one = [_decision(step, "carl")]
    assert step_outcome(step, one, HASH, PARTY, GROUPS) == "pending"
    assert step_outcome(step, [*one, _decision(step, "cora")], HASH, PARTY, GROUPS) == "approved"


def test_all_needs_every_named_person_including_the_groups_members():
    step = _step("all", users=("carl",), assignment_group=True)
    decided = [_decision(step, who) for who in ("carl", "dora", "dan")]
    # ivan is in the group but implements the change: he can never approve, so "all" of a
    # group that holds the implementer does not complete until the policy changes.
    assert step_outcome(step, decided, HASH, PARTY, GROUPS) == "pending"
    others = {"dba": ("dora", "dan")}
    assert step_outcome(step, decided, HASH, PARTY, others) == "approved"


def test_one_rejection_rejects_the_step():
    step = _step("n_of_m", 2, roles=("cab_member",))
    decided = [_decision(step, "carl"), _decision(step, "cora", "reject")]
    assert step_outcome(step, decided, HASH, PARTY, GROUPS) == "rejected"


# --- segregation of duties and one decision per person ----------------------------------------


@pytest.mark.parametrize(("who", "why"), [("rita", "requester"), ("ivan", "implementer")])
def test_the_requester_and_the_implementer_cannot_approve(who, why):
    step = _step(users=(who,), roles=("cab_member",))
    with pytest.raises(Forbidden, match=why):
        check_decider(step, PARTY, GROUPS, who, frozenset({"cab_member"}), [])


def test_someone_the_step_does_not_name_cannot_approve():
    step = _step(roles=("cab_member",))
    with pytest.raises(Forbidden, match="not an approver of the cab step"):
        check_decider(step, PARTY, GROUPS, "alex", frozenset({"agent"}), [])
    check_decider(step, PARTY, GROUPS, "carl", frozenset({"cab_member"}), [])


def test_a_group_member_may_decide_a_group_step_and_only_for_their_own_change_group():
    step = _step(assignment_group=True)
    check_decider(step, PARTY, GROUPS, "dora", frozenset(), [])
    other = Party("rita", None, "network")
    with pytest.raises(Forbidden):
        check_decider(step, other, GROUPS, "dora", frozenset(), [])


def test_one_persons_second_decision_on_a_step_is_a_conflict():
    step = _step(roles=("cab_member",))
    earlier = [_decision(step, "carl")]
    with pytest.raises(Conflict, match="counts once"):
        check_decider(step, PARTY, GROUPS, "carl", frozenset({"cab_member"}), earlier)


# --- void by content hash ---------------------------------------------------------------------


def test_a_decision_bound_to_other_content_is_void_and_does_not_count():
    step = _step(roles=("cab_member",))
    stale = [_decision(step, "carl", content_hash="b" * 64)]
    assert step_outcome(step, stale, HASH, PARTY, GROUPS) == "pending"
    status, _ = status_of([step], stale, HASH, PARTY, GROUPS)
    assert status == "pending"
    status, _ = status_of([step], stale, "b" * 64, PARTY, GROUPS)
    assert status == "approved"


def test_a_round_is_approved_only_when_every_step_is():
    specs = [
        StepSpec(name="technical", approvers=Approvers(users=("dora",)), deadline=timedelta(1)),
        StepSpec(name="cab", approvers=Approvers(users=("carl",)), deadline=timedelta(1)),
    ]
    steps = open_round(
        tenant_id="t1", change_id=CHANGE, round=1, specs=specs, content_hash=HASH, now=NOW
    )
    assert [s.state for s in steps] == ["pending", "waiting"]
    technical = [_decision(steps[0], "dora")]
    assert status_of(steps, technical, HASH, PARTY, GROUPS)[0] == "pending"
    settled = settle(steps[0], "approved", NOW)
    following = next_pending(steps, settled, NOW + timedelta(hours=1))
    assert following is not None and following.state == "pending"
    assert following.deadline_at == NOW + timedelta(hours=1) + timedelta(days=1)
    both = [*technical, _decision(steps[1], "carl")]
    assert status_of(steps, both, HASH, PARTY, GROUPS)[0] == "approved"
    assert status_of([], [], HASH, PARTY, GROUPS)[0] == "not_required"


# --- deadlines --------------------------------------------------------------------------------


def test_a_step_past_its_deadline_is_escalated_and_stays_pending_never_approved():
    step = _step(roles=("cab_member",))
    assert overdue([step], NOW + timedelta(hours=7)) == []
    late = NOW + timedelta(hours=9)
    assert overdue([step], late) == [step]
    escalated = escalate(step, late)
    assert escalated.state == "pending"
    assert escalated.escalations == 1
    assert escalated.completed_at is None
    # Escalated again one deadline period later, never before, and never approved.
    assert overdue([escalated], late + timedelta(hours=7)) == []
    again = escalate(escalated, late + timedelta(hours=8))
    assert (again.state, again.escalations) == ("pending", 2)
    assert step_outcome(again, [], HASH, PARTY, GROUPS) == "pending"


def test_only_a_pending_step_escalates():
    step = settle(_step(roles=("cab_member",)), "approved", NOW)
    with pytest.raises(ValueError, match="only a pending step"):
        escalate(step, NOW + timedelta(days=1))
