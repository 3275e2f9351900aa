"""Approvals of a change: policies, rounds, decisions, the approver's queue, CAB meetings and
the escalation of overdue steps (rules in `domain/approvals.py`).

- A round opens when the change enters `authorize` (a reaction to its own
  `ChangeTransitionedV1`, `application/reactions.py`) or when approved content is edited while
  it is there (`ChangeUpdatedV1`): the matching policy row's steps, bound to the content hash.
  Leaving `authorize` any other way voids what is still open.
- A decision (`decide`) is recorded against the pending step. When it completes the last step,
  the change moves to `scheduled` (`ChangeAuthorizedV1`); a rejection moves it back to
  `assess` with the comment (`ChangeApprovalRejectedV1`). The approval wait is observed then.
- `authorization(uow, change)` is the status others read: recomputed from the decisions whose
  content hash equals the change's current one, so an edit voids approvals by itself.
- `escalate_due` (a background task, every tenant): pending steps past their deadline are
  escalated (`ChangeApprovalEscalatedV1`), again every deadline period; never approved.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from services.change.adapters.approvals import CabMeeting, RuleSet, due_escalations
from services.change.application import schedule
from services.change.application.uow import ChangeUnitOfWork, ChangeWork, store_change
from services.change.domain.approvals import (
    FALLBACK_STEP,
    ApprovalPolicies,
    Decision,
    Party,
    Step,
    check_decider,
    escalate,
    may_decide,
    next_pending,
    open_round,
    segregation,
    settle,
    status_of,
    step_outcome,
    step_view,
    steps_for,
)
from services.change.domain.change import Change, transition
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.db import all_tenants_transaction, set_tenant
from shared.errors import Conflict, FieldError, Forbidden, NotFound, StaleVersion, invalid_field
from shared.events.catalogue import (
    CabMeetingScheduledV1,
    ChangeApprovalEscalatedV1,
    ChangeApprovalPoliciesChangedV1,
    ChangeApprovalRecordedV1,
    ChangeApprovalRejectedV1,
    ChangeApprovalRequestedV1,
    ChangeAuthorizedV1,
    EventPayload,
)

log = logging.getLogger(__name__)

POLICY_KIND = "approval"
POLICIES_SUBJECT = "approval-policies"
# Steps a CAB meeting decides: its agenda is the changes awaiting one of these.
CAB_STEPS: Final = frozenset({"cab", "ecab"})
ESCALATION_ACTOR = "system:approval-escalation"
QUEUE_SCAN = 1000


# --- policies --------------------------------------------------------------------------------


async def approval_policies(uow: ChangeWork) -> tuple[int, ApprovalPolicies]:
    """The tenant's approval policies in force and their version (0: the defaults)."""
    stored = await uow.cab.rule_set(POLICY_KIND)
    return stored.version, _policies_of(stored)


def _policies_of(stored: RuleSet) -> ApprovalPolicies:
    """The policies a stored rule set holds (the defaults for version 0)."""
    if stored.body is None:
        return ApprovalPolicies.default()
    return ApprovalPolicies.model_validate(stored.body)


async def replace_approval_policies(
    uow: ChangeWork, policies: ApprovalPolicies, *, expected_version: int, now: datetime
) -> tuple[int, ApprovalPolicies]:
    """Store the policies as the next version if the caller read the current one (412
    otherwise); announce them. Rounds already open keep the steps they opened with."""
    await uow.cab.lock_rule_set(POLICY_KIND)
    current, _ = await approval_policies(uow)
    if current != expected_version:
        raise StaleVersion("the approval policies", current, expected_version)
    version = current + 1
    body = policies.model_dump(mode="json")
    await uow.cab.add_rule_set(POLICY_KIND, version, body, at=now, actor=uow.context.actor)
    uow.record(
        POLICIES_SUBJECT, version, [ChangeApprovalPoliciesChangedV1(version=version, policies=body)]
    )
    return version, policies


def party_of(change: Change) -> Party:
    """What the approval rules need of a change."""
    return Party(change.requester, change.implementer, change.assignment_group)


# --- rounds ----------------------------------------------------------------------------------


def _requested(step: Step) -> ChangeApprovalRequestedV1:
    assert step.deadline_at is not None
    return ChangeApprovalRequestedV1(
        change_id=str(step.change_id),
        step_id=str(step.id),
        step=step.name,
        round=step.round,
        position=step.position,
        approvers=step.approvers.model_dump(mode="json"),
        quorum=step.quorum,
        n=step.n,
        deadline_at=step.deadline_at,
        content_hash=step.content_hash,
    )


async def ensure_round(uow: ChangeWork, change: Change, *, now: datetime) -> list[Step]:
    """Open an approval round for the change's current content unless one is open already
    (a pending step bound to this content hash); return the round in force."""
    latest = await uow.cab.round_steps(change.id)
    if any(s.state == "pending" and s.content_hash == change.content_hash for s in latest):
        return latest
    await uow.cab.void_open_steps(change.id, at=now)
    _, policies = await approval_policies(uow)
    _, specs = steps_for(policies, change.type, change.risk_level)
    # A standard change is here only because its pre-approved content was edited: it is no
    # longer what the template approved, so someone must approve it.
    steps = open_round(
        tenant_id=change.tenant_id,
        change_id=change.id,
        round=await uow.cab.last_round(change.id) + 1,
        specs=specs or (FALLBACK_STEP,),
        content_hash=change.content_hash,
        now=now,
    )
    await uow.cab.add_steps(steps)
    first = steps[0]
    uow.record(str(first.id), first.version, [_requested(first)])
    return steps


async def close_round(uow: ChangeWork, change_id: uuid.UUID, *, now: datetime) -> None:
    """Void what is still open of the change's round (it left authorize)."""
    await uow.cab.void_open_steps(change_id, at=now)


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """The change's authorization: `not_required` (no round ever opened), `pending`,
    `approved` or `rejected`, recomputed from the decisions bound to its current content."""

    status: str
    content_hash: str
    round: int
    steps: tuple[dict[str, Any], ...]
    approved_by: tuple[str, ...]
    decisions: tuple[dict[str, Any], ...]


async def authorization(uow: ChangeWork, change: Change) -> Authorization:
    """The change's authorization status, steps, approvers and every decision (void ones
    marked), valid only while the decisions' content hash equals the change's."""
    steps, decisions, stored = await uow.cab.authorization_inputs(change.id, POLICY_KIND)
    policies = _policies_of(stored)
    party = party_of(change)
    status, outcomes = status_of(steps, decisions, change.content_hash, party, policies.groups)
    in_round = {s.id for s in steps}
    approved_by = tuple(
        dict.fromkeys(
            d.approver
            for d in decisions
            if d.step_id in in_round
            and d.decision == "approve"
            and d.content_hash == change.content_hash
        )
    )
    names = {s.id: (s.name, s.round) for s in steps}
    return Authorization(
        status=status,
        content_hash=change.content_hash,
        round=steps[0].round if steps else 0,
        steps=tuple({**step_view(s), "outcome": o} for s, o in outcomes),
        approved_by=approved_by,
        decisions=tuple(_decision_view(d, change.content_hash, names) for d in decisions),
    )


def _decision_view(
    d: Decision, content_hash: str, names: dict[uuid.UUID, tuple[str, int]]
) -> dict[str, Any]:
    return {
        "id": str(d.id),
        "step_id": str(d.step_id),
        "step": names.get(d.step_id, (None, None))[0],
        "approver": d.approver,
        "decision": d.decision,
        "comment": d.comment,
        "content_hash": d.content_hash,
        "void": d.content_hash != content_hash,
        "at": d.at.isoformat(),
        "cab_meeting_id": str(d.cab_meeting_id) if d.cab_meeting_id else None,
    }


def authorization_view(a: Authorization) -> dict[str, Any]:
    """The authorization as the API shows it."""
    return {
        "status": a.status,
        "content_hash": a.content_hash,
        "round": a.round,
        "steps": list(a.steps),
        "approved_by": list(a.approved_by),
        "decisions": list(a.decisions),
    }


async def decide(
    uow: ChangeWork,
    change_id: uuid.UUID,
    *,
    decision: str,
    comment: str,
    now: datetime,
    content_hash: str | None = None,
    cab_meeting_id: uuid.UUID | None = None,
    metrics: ChangeMetrics | None = None,
    blackout_override_reason: str | None = None,
) -> Authorization:
    """Record the caller's decision on the change's pending step; complete the step on quorum,
    open the next, and schedule the change after the last (or send it back to assess on a
    rejection). Refusals: 404 no change; 409 not awaiting approval, content changed since the
    caller read it (`content_hash`), or a second decision; 403 requester, implementer or not an
    approver; 422 a rejection without a comment; 409 naming each blackout when the last
    approval would schedule the change into one without `blackout_override_reason` (the
    schedule's `check_schedulable`; the override is recorded)."""
    actor, roles = uow.context.actor, uow.context.roles
    change = await uow.changes.get(change_id, lock=True)
    if change is None:
        raise NotFound("change", str(change_id))
    if change.state != "authorize":
        raise Conflict(
            f"the change is in {change.state}, not awaiting approval (authorize)",
            fields=[FieldError("state", "decisions are taken in authorize")],
        )
    if content_hash is not None and content_hash != change.content_hash:
        raise Conflict(
            "the change's approved content changed since it was read: read it again",
            fields=[
                FieldError("content_hash", f"the change's content is now {change.content_hash}")
            ],
        )
    steps = await uow.cab.round_steps(change.id)
    pending = next((s for s in steps if s.state == "pending"), None)
    if pending is None or pending.content_hash != change.content_hash:
        raise Conflict("no approval step of the change is pending")
    _, policies = await approval_policies(uow)
    party = party_of(change)
    decided = await uow.cab.decisions(change.id)
    check_decider(pending, party, policies.groups, actor, roles, decided)
    if decision == "reject" and not comment.strip():
        raise invalid_field("comment", "a rejection needs a comment: the requester is owed why")
    recorded = Decision(
        id=uuid.uuid4(),
        step_id=pending.id,
        change_id=change.id,
        approver=actor,
        decision=decision,
        comment=comment.strip(),
        content_hash=change.content_hash,
        at=now,
        cab_meeting_id=cab_meeting_id,
    )
    await uow.cab.add_decision(recorded)
    outcome = step_outcome(
        pending, [*decided, recorded], change.content_hash, party, policies.groups
    )
    settled = settle(pending, outcome, now)
    await uow.cab.save_step(settled)
    uow.record(
        str(settled.id),
        settled.version,
        [
            ChangeApprovalRecordedV1(
                change_id=str(change.id),
                step_id=str(settled.id),
                step=settled.name,
                approver=actor,
                decision=decision,
                comment=recorded.comment,
                content_hash=change.content_hash,
                step_outcome=outcome,
                cab_meeting_id=str(cab_meeting_id) if cab_meeting_id else None,
            )
        ],
    )
    waited = (now - steps[0].opened_at).total_seconds()
    if outcome == "approved":
        following = next_pending(steps, settled, now)
        if following is not None:
            await uow.cab.save_step(following)
            uow.record(str(following.id), following.version, [_requested(following)])
        else:
            await _authorized(
                uow,
                change,
                steps,
                [*decided, recorded],
                waited,
                now,
                blackout_override_reason,
            )
            if metrics is not None:
                metrics.approval_wait.labels(change.type, "approved").observe(waited)
    elif outcome == "rejected":
        moved = transition(change, "assess", actor=actor, now=now, reason=recorded.comment)
        rejected: list[EventPayload] = [
            ChangeApprovalRejectedV1(
                change_id=str(change.id),
                round=settled.round,
                step=settled.name,
                approver=actor,
                comment=recorded.comment,
                content_hash=change.content_hash,
                waited_seconds=waited,
            )
        ]
        await store_change(
            uow, replace(moved, events=[*moved.events, *rejected]), "approval rejected"
        )
        if metrics is not None:
            metrics.approval_wait.labels(change.type, "rejected").observe(waited)
    return await authorization(uow, (await uow.changes.get(change.id)) or change)


async def _authorized(
    uow: ChangeWork,
    change: Change,
    steps: Sequence[Step],
    decisions: Sequence[Decision],
    waited: float,
    now: datetime,
    blackout_override_reason: str | None = None,
) -> None:
    await schedule.check_schedulable(uow, change, override_reason=blackout_override_reason)
    in_round = {s.id for s in steps}
    approvers = list(
        dict.fromkeys(
            d.approver
            for d in decisions
            if d.step_id in in_round
            and d.decision == "approve"
            and d.content_hash == change.content_hash
        )
    )
    moved = transition(
        change, "scheduled", actor=uow.context.actor, now=now, reason="approvals complete"
    )
    authorized = ChangeAuthorizedV1(
        change_id=str(change.id),
        round=steps[0].round,
        content_hash=change.content_hash,
        steps=[s.name for s in steps],
        approvers=approvers,
        waited_seconds=waited,
    )
    await store_change(uow, replace(moved, events=[*moved.events, authorized]), "authorized")


# --- the approver's queue --------------------------------------------------------------------


async def queue(uow: ChangeWork, *, now: datetime) -> list[dict[str, Any]]:
    """Every pending step the caller may decide now, oldest deadline first, with the change's
    summary, its risk, and what awaits (the step, its quorum, decisions so far)."""
    actor, roles = uow.context.actor, uow.context.roles
    _, policies = await approval_policies(uow)
    items = []
    for step in await uow.cab.pending_steps(limit=QUEUE_SCAN):
        change = await uow.changes.get(step.change_id)
        if change is None or change.state != "authorize":
            continue
        if step.content_hash != change.content_hash:
            continue
        party = party_of(change)
        if segregation(party, actor) is not None:
            continue
        if not may_decide(step, party, policies.groups, actor, roles):
            continue
        decisions = [
            d
            for d in await uow.cab.decisions(change.id)
            if d.step_id == step.id and d.content_hash == change.content_hash
        ]
        if any(d.approver == actor for d in decisions):
            continue
        items.append(_queue_item(change, step, decisions, now))
    return items


def _awaits(step: Step, approvals: int) -> str:
    if step.quorum == "any":
        return f"one approval of the {step.name} step"
    if step.quorum == "all":
        return f"every named approver of the {step.name} step ({approvals} so far)"
    return f"{step.n} approvals of the {step.name} step ({approvals} so far)"


def _queue_item(
    change: Change, step: Step, decisions: Sequence[Decision], now: datetime
) -> dict[str, Any]:
    approvals = sum(1 for d in decisions if d.decision == "approve")
    return {
        "change": change_summary(change),
        "step": step_view(step),
        "awaits": _awaits(step, approvals),
        "approvals": approvals,
        "overdue": step.deadline_at is not None and step.deadline_at <= now,
    }


def change_summary(change: Change) -> dict[str, Any]:
    """What an approver needs to see of a change at a glance."""
    return {
        "id": str(change.id),
        "reference": change.reference,
        "title": change.title,
        "type": change.type,
        "state": change.state,
        "risk_level": change.risk_level,
        "requester": change.requester,
        "assignment_group": change.assignment_group,
        "affected_cis": [str(ci) for ci in change.affected_cis],
        "business_services": list(change.business_services),
        "planned_start": change.planned_start.isoformat() if change.planned_start else None,
        "planned_end": change.planned_end.isoformat() if change.planned_end else None,
        "content_hash": change.content_hash,
    }


# --- CAB meetings ----------------------------------------------------------------------------


async def schedule_meeting(
    uow: ChangeWork, *, title: str, starts_at: datetime, members: Sequence[str], now: datetime
) -> CabMeeting:
    """Plan a CAB meeting with its members; announce it."""
    unique = tuple(dict.fromkeys(m.strip() for m in members if m.strip()))
    if not unique:
        raise invalid_field("members", "a CAB meeting needs at least one member")
    meeting = CabMeeting(
        id=uuid.uuid4(),
        title=title.strip(),
        starts_at=starts_at,
        members=unique,
        created_at=now,
        created_by=uow.context.actor,
    )
    await uow.cab.add_meeting(meeting)
    uow.record(
        str(meeting.id),
        1,
        [
            CabMeetingScheduledV1(
                meeting_id=str(meeting.id),
                title=meeting.title,
                starts_at=starts_at,
                members=list(unique),
            )
        ],
    )
    return meeting


async def meeting_with_agenda(
    uow: ChangeWork, meeting_id: uuid.UUID, *, now: datetime
) -> dict[str, Any]:
    """The meeting and its agenda: every change awaiting a CAB step now, oldest deadline first,
    with its summary, risk and the decisions so far."""
    meeting = await uow.cab.meeting(meeting_id)
    if meeting is None:
        raise NotFound("CAB meeting", str(meeting_id))
    agenda = []
    for step in await uow.cab.pending_steps(limit=QUEUE_SCAN):
        if step.name not in CAB_STEPS:
            continue
        change = await uow.changes.get(step.change_id)
        if (
            change is None
            or change.state != "authorize"
            or step.content_hash != change.content_hash
        ):
            continue
        decisions = [
            d
            for d in await uow.cab.decisions(change.id)
            if d.step_id == step.id and d.content_hash == change.content_hash
        ]
        item = _queue_item(change, step, decisions, now)
        item["decisions"] = [
            {"approver": d.approver, "decision": d.decision, "comment": d.comment}
            for d in decisions
        ]
        agenda.append(item)
    return {**meeting_view(meeting), "agenda": agenda}


def meeting_view(meeting: CabMeeting) -> dict[str, Any]:
    """A CAB meeting as the API shows it (without its agenda)."""
    return {
        "id": str(meeting.id),
        "title": meeting.title,
        "starts_at": meeting.starts_at.isoformat(),
        "members": list(meeting.members),
        "created_at": meeting.created_at.isoformat(),
        "created_by": meeting.created_by,
    }


async def decide_in_meeting(
    uow: ChangeWork,
    meeting_id: uuid.UUID,
    change_id: uuid.UUID,
    *,
    decision: str,
    comment: str,
    now: datetime,
    content_hash: str | None = None,
    metrics: ChangeMetrics | None = None,
    blackout_override_reason: str | None = None,
) -> Authorization:
    """A member's decision on a change of the meeting's agenda, recorded through the same
    approvals (403 for a non-member; 409 when the change awaits no CAB step)."""
    meeting = await uow.cab.meeting(meeting_id)
    if meeting is None:
        raise NotFound("CAB meeting", str(meeting_id))
    if uow.context.actor not in meeting.members:
        raise Forbidden(
            f"{uow.context.actor} is not a member of this CAB meeting",
            fields=[FieldError("approver", "not a member of the meeting")],
        )
    steps = await uow.cab.round_steps(change_id)
    pending = next((s for s in steps if s.state == "pending"), None)
    if pending is None or pending.name not in CAB_STEPS:
        raise Conflict(
            "the change is not on the agenda: it awaits no CAB step",
            fields=[FieldError("change_id", "awaits no CAB step")],
        )
    return await decide(
        uow,
        change_id,
        decision=decision,
        comment=comment,
        now=now,
        content_hash=content_hash,
        cab_meeting_id=meeting.id,
        metrics=metrics,
        blackout_override_reason=blackout_override_reason,
    )


# --- escalation ------------------------------------------------------------------------------


async def escalate_step(uow: ChangeWork, step_id: uuid.UUID, *, now: datetime) -> bool:
    """Escalate one step if it is still pending and due (True when it did); never approves."""
    step = await uow.cab.step(step_id, lock=True)
    if step is None or step.state != "pending" or step.escalate_at is None:
        return False
    if step.escalate_at > now:
        return False
    assert step.deadline_at is not None
    escalated = escalate(step, now)
    await uow.cab.save_step(escalated)
    uow.record(
        str(step.id),
        escalated.version,
        [
            ChangeApprovalEscalatedV1(
                change_id=str(step.change_id),
                step_id=str(step.id),
                step=step.name,
                deadline_at=step.deadline_at,
                escalations=escalated.escalations,
                approvers=step.approvers.model_dump(mode="json"),
            )
        ],
    )
    return True


async def escalate_due(
    pool: asyncpg.Pool, metrics: ChangeMetrics | None = None, *, batch: int = 200
) -> int:
    """One round over every tenant: escalate up to `batch` overdue pending steps. Returns how
    many it escalated."""
    escalated = 0
    async with all_tenants_transaction(pool) as conn:
        now = await conn.fetchval("SELECT now()")
        assert isinstance(now, datetime)
        due = await due_escalations(conn, now, limit=batch)
        for tenant, step_id in due:
            await set_tenant(conn, tenant)
            context = RequestContext(tenant, ESCALATION_ACTOR, str(uuid.uuid4()))
            async with conn.transaction(), ChangeUnitOfWork.joining(conn, context) as uow:
                if await escalate_step(uow, step_id, now=now):
                    escalated += 1
                    if metrics is not None:
                        metrics.approval_escalations.inc()
    return escalated


async def run_escalations(
    pool: asyncpg.Pool, metrics: ChangeMetrics | None = None, *, interval: float = 60.0
) -> None:
    """Escalate overdue approval steps every `interval` seconds (at once while rounds come back
    full). Supervised: an error ends the loop and the supervisor restarts it."""
    while True:
        escalated = await escalate_due(pool, metrics)
        if escalated:
            log.info("overdue approval steps escalated", extra={"escalated": escalated})
        await asyncio.sleep(0 if escalated >= 200 else interval)


def utc_now() -> datetime:
    """The time a use case runs at."""
    return datetime.now(UTC)
