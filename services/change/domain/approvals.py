"""Approval policies, steps and decisions of a change (ISO/IEC 20000-1 8.5.1): pure rules.

- **Policies** (`ApprovalPolicies`) are a tenant's decision table: the first row whose change
  types and risk levels match (an empty list matches any) gives the ordered steps. A normal or
  emergency change that no row matches still gets a step (`FALLBACK_STEP`): such a change is
  never authorized by having nobody to ask.
- **A step** (`StepSpec`) names its approvers (named users, roles, and/or the members of the
  change's assignment group as the policy lists them), its quorum (`any`, `all`, or `n_of_m`
  with `n`) and its deadline. When a change enters `authorize` the matching row's steps become
  a round of `Step`s bound to the change's content hash; the first is `pending`, the others
  `waiting` until the one before completes.
- **Decisions** (`Decision`) each carry the change's content hash when they were made. Only a
  decision whose hash equals the change's current hash counts (`counted`); any other is void.
  The requester and the implementer of a change cannot decide on it, and one person decides
  once per step (`check_decider`). One rejection rejects the step, and with it the round.
- **Deadlines escalate, never approve** (`escalate`): a pending step past its deadline is
  escalated again every deadline period while it stays pending; its state does not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from shared.errors import Conflict, FieldError, Forbidden
from shared.models import RequestBody

Quorum = Literal["any", "all", "n_of_m"]
DecisionName = Literal["approve", "reject"]
StepState = Literal["waiting", "pending", "approved", "rejected", "void"]
AuthorizationStatus = Literal["not_required", "pending", "approved", "rejected"]
# The risk level of a change never assessed, for matching policy rows.
UNASSESSED: Final = "unassessed"
STEP_NAME = r"^[a-z][a-z0-9_-]{0,39}$"


class Approvers(RequestBody):
    """Who may decide a step: any named user, anyone holding one of the roles, or (with
    `assignment_group`) a member of the change's assignment group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: tuple[str, ...] = Field(default=(), max_length=100)
    roles: tuple[str, ...] = Field(default=(), max_length=20)
    assignment_group: bool = Field(
        default=False, description="The members of the change's assignment group (policy groups)."
    )


class StepSpec(RequestBody):
    """One step of a policy row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=STEP_NAME, description="e.g. technical, cab, ecab")
    approvers: Approvers
    quorum: Quorum = "any"
    n: int | None = Field(default=None, ge=1, le=100, description="For n_of_m: how many.")
    deadline: timedelta = Field(description="ISO 8601 duration (PT8H) or seconds.")

    @model_validator(mode="after")
    def _sound(self) -> StepSpec:
        who = self.approvers
        if not (who.users or who.roles or who.assignment_group):
            raise ValueError("a step needs approvers: users, roles or assignment_group")
        if self.quorum == "n_of_m" and self.n is None:
            raise ValueError("quorum n_of_m needs n")
        if self.quorum != "n_of_m" and self.n is not None:
            raise ValueError("n is only for quorum n_of_m")
        only_users = who.users and not who.roles and not who.assignment_group
        if self.quorum == "n_of_m" and only_users and (self.n or 0) > len(set(who.users)):
            raise ValueError("n is more than the named users")
        if self.quorum == "all" and who.roles:
            raise ValueError("quorum all needs a known list of people: users or assignment_group")
        if self.deadline <= timedelta(0):
            raise ValueError("the deadline must be positive")
        return self


class PolicyRow(RequestBody):
    """A row of the decision table: which changes it applies to and their steps, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    types: tuple[Literal["standard", "normal", "emergency"], ...] = Field(
        default=(), description="Change types it applies to (empty: any)."
    )
    risk_levels: tuple[Literal["low", "medium", "high", "unassessed"], ...] = Field(
        default=(), description="Risk levels it applies to (empty: any)."
    )
    steps: tuple[StepSpec, ...] = Field(default=(), max_length=10)

    @model_validator(mode="after")
    def _distinct_steps(self) -> PolicyRow:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("step names must be distinct within a row")
        return self

    def matches(self, change_type: str, risk_level: str) -> bool:
        """Whether the row applies to a change of this type and risk level."""
        return (not self.types or change_type in self.types) and (
            not self.risk_levels or risk_level in self.risk_levels
        )


class ApprovalPolicies(RequestBody):
    """A tenant's approval policies: the decision table (first match wins) and the members of
    each assignment group (until groups come from a directory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: tuple[PolicyRow, ...] = Field(max_length=100)
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Assignment group -> its members' user names."
    )

    @classmethod
    def default(cls) -> ApprovalPolicies:
        """Normal: technical (assignment group, or a change manager) then the CAB (two CAB
        members); emergency: the ECAB (any CAB member); standard: none (pre-approved)."""
        return cls(
            rows=(
                PolicyRow(name="standard changes are pre-approved", types=("standard",)),
                PolicyRow(
                    name="emergency: ECAB",
                    types=("emergency",),
                    steps=(
                        StepSpec(
                            name="ecab",
                            approvers=Approvers(roles=("cab_member",)),
                            deadline=timedelta(hours=4),
                        ),
                    ),
                ),
                PolicyRow(
                    name="normal: technical then CAB",
                    types=("normal",),
                    steps=(
                        StepSpec(
                            name="technical",
                            approvers=Approvers(roles=("change_manager",), assignment_group=True),
                            deadline=timedelta(days=2),
                        ),
                        StepSpec(
                            name="cab",
                            approvers=Approvers(roles=("cab_member",)),
                            quorum="n_of_m",
                            n=2,
                            deadline=timedelta(days=5),
                        ),
                    ),
                ),
            )
        )


# What a normal or emergency change gets when no row matches it: never approved by silence.
FALLBACK_STEP: Final = StepSpec(
    name="change_manager",
    approvers=Approvers(roles=("change_manager",)),
    deadline=timedelta(days=2),
)


def steps_for(
    policies: ApprovalPolicies, change_type: str, risk_level: str | None
) -> tuple[str | None, tuple[StepSpec, ...]]:
    """The matching row's name and steps (first match wins); the fallback step for a normal or
    emergency change no row matches; none for a standard one."""
    level = risk_level or UNASSESSED
    for row in policies.rows:
        if row.matches(change_type, level):
            if not row.steps and change_type != "standard":
                # A row with no steps for a normal or emergency change would approve by silence.
                return row.name, (FALLBACK_STEP,)
            return row.name, row.steps
    if change_type == "standard":
        return None, ()
    return None, (FALLBACK_STEP,)


@dataclass(frozen=True)
class Step:
    """A step of one change's approval round, bound to the content hash it was opened for."""

    id: uuid.UUID
    tenant_id: str
    change_id: uuid.UUID
    round: int
    position: int
    name: str
    approvers: Approvers
    quorum: str
    n: int | None
    deadline: timedelta
    content_hash: str
    state: str
    opened_at: datetime
    deadline_at: datetime | None = None
    escalate_at: datetime | None = None
    escalations: int = 0
    completed_at: datetime | None = None
    # The step's own event sequence (its events have the step as subject).
    version: int = 1


@dataclass(frozen=True)
class Decision:
    """One person's decision on one step, bound to the change's content hash at the time."""

    id: uuid.UUID
    step_id: uuid.UUID
    change_id: uuid.UUID
    approver: str
    decision: str
    comment: str
    content_hash: str
    at: datetime
    cab_meeting_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Party:
    """What the approval rules need of a change."""

    requester: str
    implementer: str | None
    assignment_group: str | None


def open_round(
    *,
    tenant_id: str,
    change_id: uuid.UUID,
    round: int,
    specs: Sequence[StepSpec],
    content_hash: str,
    now: datetime,
) -> list[Step]:
    """The steps of a new round: the first pending with its deadline running, the rest
    waiting."""
    steps = []
    for position, spec in enumerate(specs):
        first = position == 0
        deadline_at = now + spec.deadline if first else None
        steps.append(
            Step(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                change_id=change_id,
                round=round,
                position=position,
                name=spec.name,
                approvers=spec.approvers,
                quorum=spec.quorum,
                n=spec.n,
                deadline=spec.deadline,
                content_hash=content_hash,
                state="pending" if first else "waiting",
                opened_at=now,
                deadline_at=deadline_at,
                escalate_at=deadline_at,
                # A waiting step has published nothing yet: its first event (requested) is 1.
                version=1 if first else 0,
            )
        )
    return steps


def members(step: Step, party: Party, groups: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """The people the step names (users, and its change's group members when it names the
    group); roles are open-ended and not listed."""
    names = set(step.approvers.users)
    if step.approvers.assignment_group and party.assignment_group:
        names |= set(groups.get(party.assignment_group, ()))
    return frozenset(names)


def may_decide(
    step: Step,
    party: Party,
    groups: dict[str, tuple[str, ...]],
    actor: str,
    roles: frozenset[str],
) -> bool:
    """Whether the actor is one of the step's approvers (by name, role or group)."""
    return actor in members(step, party, groups) or bool(set(step.approvers.roles) & roles)


def segregation(party: Party, actor: str) -> str | None:
    """Why the actor may not decide on this change at all (None: nothing forbids it)."""
    if actor == party.requester:
        return "the change's requester cannot approve it (segregation of duties)"
    if party.implementer is not None and actor == party.implementer:
        return "the change's implementer cannot approve it (segregation of duties)"
    return None


def check_decider(
    step: Step,
    party: Party,
    groups: dict[str, tuple[str, ...]],
    actor: str,
    roles: frozenset[str],
    decided: Sequence[Decision],
) -> None:
    """Refuse a decision the rules do not allow: 403 for the requester, the implementer, or
    someone who is not an approver of the step; 409 for a second decision by one person."""
    why = segregation(party, actor)
    if why is not None:
        raise Forbidden(why, fields=[FieldError("approver", why)])
    if not may_decide(step, party, groups, actor, roles):
        raise Forbidden(
            f"{actor} is not an approver of the {step.name} step",
            fields=[FieldError("approver", f"not an approver of the {step.name} step")],
            extensions={"approvers": step.approvers.model_dump(mode="json")},
        )
    earlier = next((d for d in decided if d.step_id == step.id and d.approver == actor), None)
    if earlier is not None:
        raise Conflict(
            f"{actor} already decided ({earlier.decision}) on the {step.name} step: one"
            " person's decision counts once",
            fields=[FieldError("decision", "already decided on this step")],
        )


def counted(decisions: Sequence[Decision], content_hash: str) -> list[Decision]:
    """The decisions that count: those bound to the change's current content hash."""
    return [d for d in decisions if d.content_hash == content_hash]


def step_outcome(
    step: Step,
    decisions: Sequence[Decision],
    content_hash: str,
    party: Party,
    groups: dict[str, tuple[str, ...]],
) -> str:
    """`approved`, `rejected` or `pending` from the step's counted decisions and its quorum."""
    mine = [d for d in counted(decisions, content_hash) if d.step_id == step.id]
    if any(d.decision == "reject" for d in mine):
        return "rejected"
    approvers = {d.approver for d in mine if d.decision == "approve"}
    if quorum_met(step, approvers, members(step, party, groups)):
        return "approved"
    return "pending"


def quorum_met(step: Step, approvers: set[str], named: frozenset[str]) -> bool:
    """Whether these distinct approvers meet the step's quorum (`named`: the people it lists)."""
    if step.quorum == "any":
        return len(approvers) >= 1
    if step.quorum == "all":
        # Nobody listed means nobody can complete it: never approved by an empty list.
        return bool(named) and named <= approvers
    assert step.n is not None
    return len(approvers) >= step.n


def settle(step: Step, outcome: str, now: datetime) -> Step:
    """The step after a decision: one version more (the decision's event), completed when the
    decision settled it."""
    if outcome == "pending":
        return replace(step, version=step.version + 1)
    return replace(step, state=outcome, completed_at=now, version=step.version + 1)


def next_pending(steps: Sequence[Step], settled: Step, now: datetime) -> Step | None:
    """The step that becomes pending once `settled` was approved (None: it was the last), with
    its deadline running from now."""
    if settled.state != "approved":
        return None
    following = [s for s in steps if s.position == settled.position + 1]
    if not following:
        return None
    after = following[0]
    deadline_at = now + after.deadline
    return replace(
        after,
        state="pending",
        opened_at=now,
        deadline_at=deadline_at,
        escalate_at=deadline_at,
        version=after.version + 1,
    )


def escalate(step: Step, now: datetime) -> Step:
    """A pending step past its deadline, escalated once more: still pending (a deadline never
    approves), next escalation one deadline period from now."""
    if step.state != "pending":
        raise ValueError(f"only a pending step escalates, not a {step.state} one")
    return replace(
        step,
        escalations=step.escalations + 1,
        escalate_at=now + step.deadline,
        version=step.version + 1,
    )


def overdue(steps: Sequence[Step], now: datetime) -> list[Step]:
    """The pending steps whose escalation is due."""
    return [
        s
        for s in steps
        if s.state == "pending" and s.escalate_at is not None and s.escalate_at <= now
    ]


def status_of(
    steps: Sequence[Step],
    decisions: Sequence[Decision],
    content_hash: str,
    party: Party,
    groups: dict[str, tuple[str, ...]],
) -> tuple[str, list[tuple[Step, str]]]:
    """The authorization status of a round, recomputed from the counted decisions (never from
    stored states alone): each step's outcome, and the round's status."""
    if not steps:
        return "not_required", []
    outcomes = [(s, step_outcome(s, decisions, content_hash, party, groups)) for s in steps]
    if any(o == "rejected" for _, o in outcomes):
        return "rejected", outcomes
    if all(o == "approved" for _, o in outcomes):
        return "approved", outcomes
    return "pending", outcomes


def step_view(step: Step) -> dict[str, Any]:
    """A step as the API shows it."""
    return {
        "id": str(step.id),
        "round": step.round,
        "position": step.position,
        "name": step.name,
        "approvers": step.approvers.model_dump(mode="json"),
        "quorum": step.quorum,
        "n": step.n,
        "deadline": step.deadline.total_seconds(),
        "content_hash": step.content_hash,
        "state": step.state,
        "opened_at": step.opened_at.isoformat(),
        "deadline_at": step.deadline_at.isoformat() if step.deadline_at else None,
        "escalations": step.escalations,
        "completed_at": step.completed_at.isoformat() if step.completed_at else None,
    }
