"""The service request aggregate (ISO/IEC 20000-1 8.6.2): its fields, who may decide on it,
and the events that announce each change.

Pure logic, like `domain/incident.py`: the application layer loads a `ServiceRequest` (and its
recorded approvals), asks this module for the next version and its events, and stores both in
one transaction. States and moves are `workflow.SERVICE_REQUEST`'s; this module adds the rules
that depend on the record rather than on the move:

- **Submission.** A request is submitted in state `submitted`. One that needs approval is sent
  on to `awaiting_approval` at once, by the application in the same transaction, as a second
  version (`route_for_approval`); one that does not waits in `submitted` until fulfilment starts.
  A request needs approval when the submitter says so or names approvers.
- **Segregation of duties.** Neither the requester (who the request is for) nor its submitter
  may decide on it (`SelfApproval`, a `Forbidden`, HTTP 403: the caller is not allowed to,
  whatever the request's state; retrying cannot help). Nor may they be named as its approvers.
- **Named approvers.** With no names, one decision by anybody allowed to approve settles the
  request. With names, only they may decide (`NotAnApprover`, a `Forbidden`, 403), each once
  (`AlreadyDecided`, a `Conflict`, 409); every one must approve before fulfilment starts, and
  one rejection rejects the request. Each decision is recorded (`RequestApprovalRecordedV1`)
  with the approver and the instant; the one that settles the request moves it too.
- **A rejection needs a comment** (the requester is owed the reason; `workflow.Approval`
  enforces it): refused as `InvalidTransitionDetails` naming `comment` (422).
- **Fulfilled needs notes**: what was delivered, kept as `fulfilment_notes` (422 naming
  `notes` without them). Notes are optional on the other moves and kept in the event.
- Leaving `awaiting_approval` for `in_fulfilment` or `rejected` is a decision, never a plain
  move: `transition` refuses it (the workflow names the missing `approval`, 422).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

from services.incident.domain import workflow
from services.incident.domain.priority import PriorityMatrix
from services.incident.domain.workflow import Approval, Decision, WorkflowError
from shared.errors import Conflict, FieldError, Forbidden
from shared.events.catalogue import (
    EventPayload,
    RequestApprovalRecordedV1,
    RequestSubmittedV1,
    RequestTransitionedV1,
)
from shared.records.record import Changed, VersionedRecord, apply_change, diff
from shared.records.record import transition as move

RECORD: Final = "service request"
# Moves that must say what was done.
NOTES_REQUIRED: Final[frozenset[str]] = frozenset({"fulfilled"})


class InvalidRequest(ValueError):
    """A submission the rules refuse; `problems` maps each field to why (HTTP: 422)."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in problems.items()))
        self.problems = dict(problems)


def _on_decision(detail: str) -> list[FieldError]:
    """A refused decision names the body's `decision` with the reason."""
    return [FieldError("decision", detail)]


class SelfApproval(WorkflowError, Forbidden):
    """The requester or the submitter tried to decide on their own request."""

    def __init__(self, approver: str) -> None:
        detail = (
            f"{approver} cannot decide on a request they submitted or that is for them"
            " (segregation of duties)"
        )
        super().__init__(detail, fields=_on_decision(detail))
        self.approver = approver


class NotAnApprover(WorkflowError, Forbidden):
    """The request names its approvers, and the caller is not one of them."""

    def __init__(self, approver: str, approvers: tuple[str, ...]) -> None:
        detail = f"{approver} is not an approver of this request ({', '.join(approvers)})"
        super().__init__(detail, fields=_on_decision(detail))
        self.approver = approver
        self.approvers = approvers


class AlreadyDecided(WorkflowError, Conflict):
    """The approver's decision on this request is recorded already."""

    def __init__(self, approver: str, decision: str) -> None:
        detail = f"{approver} has {decision} this request already"
        super().__init__(detail, fields=_on_decision(detail))
        self.approver = approver
        self.decision = decision


class NoDecisionDue(WorkflowError, Conflict):
    """A decision on a request that is not awaiting approval."""

    def __init__(self, state: str) -> None:
        detail = f"the request is {state}, not awaiting approval: no decision is due"
        super().__init__(detail, fields=_on_decision(detail))
        self.state = state


@dataclass(frozen=True)
class ServiceRequest(VersionedRecord):
    """A service request as the service stores it (REQ<number>, per tenant)."""

    PREFIX: ClassVar[str] = "REQ"

    number: int
    title: str
    description: str
    requester: str
    impact: int
    urgency: int
    priority: int
    needs_approval: bool
    item: str | None = None
    service: str | None = None
    approvers: tuple[str, ...] = ()
    sla_policy: str | None = None
    fulfilment_notes: str | None = None
    fulfilled_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None

    def involves(self, person: str) -> bool:
        """Whether `person` is the requester or the submitter (who may follow it, and who may
        never decide on it)."""
        return person in (self.requester, self.created_by)


@dataclass(frozen=True)
class Change(Changed[ServiceRequest]):
    """A new version of a request, what changed, the events to publish, and the decision to
    record when the change is one."""

    approval: Approval | None = None

    @property
    def request(self) -> ServiceRequest:
        """The new version."""
        return self.record


def approvers_of(
    named: Iterable[str], *, requester: str, submitter: str
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The named approvers, blanks stripped and duplicates dropped (first seen order), and the
    problems with them by field (the requester and the submitter may not approve)."""
    approvers = tuple(dict.fromkeys(name.strip() for name in named if name.strip()))
    problems: dict[str, str] = {}
    excluded = sorted({requester, submitter} & set(approvers))
    if excluded:
        problems["approvers"] = (
            f"{', '.join(excluded)} cannot approve: the requester and the submitter never"
            " approve their own request (segregation of duties)"
        )
    return approvers, problems


def submit(
    *,
    tenant_id: str,
    number: int,
    title: str,
    description: str,
    actor: str,
    now: datetime,
    requested_for: str | None = None,
    impact: int = 3,
    urgency: int = 3,
    matrix: PriorityMatrix | None = None,
    needs_approval: bool | None = None,
    approvers: Sequence[str] = (),
    item: str | None = None,
    service: str | None = None,
    sla_policy: str | None = None,
) -> tuple[ServiceRequest, list[EventPayload]]:
    """A new request in state `submitted` (version 1), and the event that announces it.

    The requester is `requested_for` when given, else the submitter. `needs_approval` None
    means "when approvers are named". Refuses (`InvalidRequest` naming the field) approvers
    for a request said to need none, and the requester or the submitter as approver.
    """
    requester = (requested_for or "").strip() or actor
    named, problems = approvers_of(approvers, requester=requester, submitter=actor)
    if needs_approval is None:
        needs_approval = bool(named)
    elif not needs_approval and named:
        problems.setdefault("approvers", "a request that needs no approval names no approvers")
    if problems:
        raise InvalidRequest(problems)
    priority = (matrix or PriorityMatrix.default()).priority(impact, urgency)
    request = ServiceRequest.first(
        tenant_id=tenant_id,
        actor=actor,
        now=now,
        number=number,
        title=title,
        description=description,
        requester=requester,
        impact=impact,
        urgency=urgency,
        priority=priority,
        needs_approval=needs_approval,
        state="submitted",
        item=item,
        service=service,
        approvers=named,
        sla_policy=sla_policy,
    )
    event = RequestSubmittedV1(
        title=title,
        description=description,
        requester=requester,
        item=item,
        service=service,
        priority=priority,
        needs_approval=needs_approval,
        sla_policy=sla_policy,
        number=number,
        impact=impact,
        urgency=urgency,
        approvers=list(named),
    )
    return request, [event]


def route_for_approval(request: ServiceRequest, *, now: datetime) -> Change | None:
    """The automatic move of a just-submitted request that needs approval to
    `awaiting_approval` (None for one that needs none), made by its submitter."""
    if not request.needs_approval or request.state != "submitted":
        return None
    return transition(
        request, "awaiting_approval", actor=request.created_by, now=now, automatic=True
    )


def transition(
    request: ServiceRequest,
    wanted: str,
    *,
    actor: str,
    now: datetime,
    notes: str | None = None,
    automatic: bool = False,
) -> Change:
    """Move to another state: `IllegalTransition` (409) for a move the workflow does not have,
    `InvalidTransitionDetails` (422) for a decision made as a plain move or a fulfilment
    without notes."""
    notes = notes.strip() if notes and notes.strip() else None

    def noted(request: ServiceRequest) -> None:
        if wanted in NOTES_REQUIRED and notes is None:
            raise workflow.SERVICE_REQUEST.refuse(
                request.state,
                wanted,
                {"notes": f"required to go from {request.state} to {wanted}: say what was done"},
            )

    values: dict[str, Any] = {}
    if wanted == "fulfilled":
        values |= {"fulfilment_notes": notes, "fulfilled_at": now}
    elif wanted == "closed":
        values |= {"closed_at": now, "closed_by": actor}
    # A decision is never a plain move: no approval here, so leaving awaiting_approval is refused.
    after, changes = move(
        request,
        workflow.SERVICE_REQUEST,
        wanted,
        actor=actor,
        now=now,
        details={"approval": None},
        values=values,
        guard=noted,
    )
    event = RequestTransitionedV1(
        from_state=request.state, to_state=after.state, notes=notes, automatic=automatic
    )
    return Change(after, changes, [event])


def decide(
    request: ServiceRequest,
    *,
    approver: str,
    decision: Decision,
    now: datetime,
    comment: str = "",
    recorded: Sequence[Approval] = (),
) -> Change:
    """Record `approver`'s decision (`recorded`: the decisions already on the request).

    Refused, in this order: `NoDecisionDue` (409) unless the request awaits approval;
    `SelfApproval` (403) from the requester or the submitter; `NotAnApprover` (403) from
    someone the request does not name when it names approvers; `AlreadyDecided` (409) from an
    approver who has decided; `InvalidTransitionDetails` naming `comment` (422) for a rejection
    without a reason. A rejection rejects the request; an approval moves it to `in_fulfilment`
    once every named approver (or, with none named, this one) has approved, and is otherwise
    recorded with the request staying where it is.
    """
    if request.state != "awaiting_approval":
        raise NoDecisionDue(request.state)
    if request.involves(approver):
        raise SelfApproval(approver)
    if request.approvers and approver not in request.approvers:
        raise NotAnApprover(approver, request.approvers)
    earlier = next((a for a in recorded if a.approver == approver), None)
    if earlier is not None:
        raise AlreadyDecided(approver, earlier.decision)
    if decision == "rejected" and not comment.strip():
        raise workflow.SERVICE_REQUEST.refuse(
            request.state,
            "rejected",
            {"comment": "required to reject a request: the requester is owed the reason"},
        )
    approval = Approval(approver=approver, decision=decision, at=now, comment=comment.strip())
    approved = {a.approver for a in recorded if a.decision == "approved"} | {approver}
    settles = decision == "rejected" or not (set(request.approvers) - approved)
    recorded_event = RequestApprovalRecordedV1(
        approver=approver, decision=decision, at=now, comment=approval.comment
    )
    changes: dict[str, dict[str, Any]] = {
        "approval": {
            "from": None,
            "to": {
                "approver": approver,
                "decision": decision,
                "at": now.isoformat(),
                "comment": approval.comment,
            },
        }
    }
    if not settles:
        after, _ = apply_change(request, {}, actor=approver, now=now)
        return Change(after, changes, [recorded_event], approval)
    wanted = workflow.state_after_approval(request.state, approval)
    after, _ = apply_change(request, {"state": wanted}, actor=approver, now=now)
    moved = RequestTransitionedV1(
        from_state=request.state, to_state=wanted, notes=approval.comment or None
    )
    changes |= diff(request, {"state": wanted})
    return Change(after, changes, [recorded_event, moved], approval)
