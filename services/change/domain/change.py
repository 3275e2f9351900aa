"""The change record (ISO/IEC 20000-1 8.5.1): its fields, its states, and the one way to change it.

Pure logic, like the incident service's `domain/problem.py`: the application loads a `Change`,
asks this module for the next version and its events, and stores both in one transaction.

- **Types** (`ChangeType`): `standard` (from a pre-approved template; goes straight from `new`
  to `scheduled`), `normal` (assessed, then authorized), `emergency` (skips assessment: `new`
  to `authorize`; needs a linked incident and an emergency CAB approval, and gets a
  retrospective review due within the tenant's number of days).
- **States** (`CHANGE`): new -> assess -> authorize -> scheduled -> implement -> review ->
  closed, and cancelled; leaving `implement` needs an `outcome` (`Outcome`).
- **Content hash** (`content_hash`): the SHA-256 of what an approver approves (type, window,
  affected CIs, plans). Every approval is bound to the hash of its time; editing any of these
  after approval gives another hash, which voids the approvals, and a change past `authorize`
  goes back to `authorize` (`edit`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Final, Literal, get_args

from shared.errors import FieldError, ValidationFailed
from shared.events.catalogue import (
    ChangeCreatedV1,
    ChangeImplementedV1,
    ChangeTransitionedV1,
    ChangeUpdatedV1,
    EventPayload,
)
from shared.records.record import Changed, VersionedRecord, apply_change, change_value
from shared.records.record import transition as move
from shared.records.workflow import IllegalTransition, StateMachine, on_entry

ChangeType = Literal["standard", "normal", "emergency"]
ChangeState = Literal[
    "new", "assess", "authorize", "scheduled", "implement", "review", "closed", "cancelled"
]
Outcome = Literal["successful", "successful_with_issues", "failed", "rolled_back"]
# How the change came to be: asked for by a person, by a problem (8.6.3), registered by a
# deployment gate, or opened to review a modification nobody authorized.
Origin = Literal["manual", "problem", "deployment", "unauthorized"]
CHANGE_TYPES: Final[tuple[str, ...]] = get_args(ChangeType)
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)

CHANGE: Final = StateMachine[ChangeState](
    "change",
    {
        # new -> scheduled is a standard change's (pre-approved); new -> authorize an emergency's
        # (no assessment); new -> assess a normal change's. `check_type_route` says which.
        "new": frozenset({"assess", "authorize", "scheduled", "cancelled"}),
        "assess": frozenset({"authorize", "cancelled"}),
        # Back to assess when the CAB asks for more; scheduled once the approvals complete.
        "authorize": frozenset({"assess", "scheduled", "cancelled"}),
        # Back to authorize when an edit voids the approvals.
        "scheduled": frozenset({"implement", "authorize", "cancelled"}),
        "implement": frozenset({"review"}),
        "review": frozenset({"closed"}),
        "closed": frozenset(),
        "cancelled": frozenset(),
    },
    {
        ("implement", "review"): ("outcome",),
        **on_entry(
            {
                "new": ("cancelled",),
                "assess": ("cancelled",),
                "authorize": ("cancelled",),
                "scheduled": ("cancelled",),
            },
            {"cancelled": ("reason",)},
        ),
    },
    choices={"outcome": OUTCOMES},
)

# The first move of each type out of `new` (besides cancelling).
FIRST_MOVE: Final[Mapping[str, str]] = {
    "standard": "scheduled",
    "normal": "assess",
    "emergency": "authorize",
}
# What an approval approves: editing one of these after approval voids the approvals.
APPROVED_CONTENT: Final[tuple[str, ...]] = (
    "type",
    "planned_start",
    "planned_end",
    "affected_cis",
    "implementation_plan",
    "backout_plan",
    "test_plan",
)
# States whose approvals an edit of the approved content voids (back to authorize).
APPROVED_STATES: Final[frozenset[str]] = frozenset({"scheduled"})
# States in which the change may still be edited at all.
EDITABLE_STATES: Final[frozenset[str]] = frozenset({"new", "assess", "authorize", "scheduled"})


@dataclass(frozen=True)
class Change(VersionedRecord):
    """A request for change as the service stores it (CHG<number>)."""

    PREFIX: ClassVar[str] = "CHG"

    number: int
    type: str
    origin: str
    title: str
    description: str
    justification: str
    requester: str
    assignment_group: str | None = None
    implementer: str | None = None
    template_id: uuid.UUID | None = None
    # Validated against the CMDB projection; the business services derive from them.
    affected_cis: tuple[uuid.UUID, ...] = ()
    business_services: tuple[str, ...] = ()
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    implementation_plan: str | None = None
    backout_plan: str | None = None
    test_plan: str | None = None
    # Links (https://...) or attachments' hashes (sha256:<hex>).
    test_evidence: tuple[str, ...] = ()
    backout_tested: bool = False
    risk_level: str | None = None
    impact: str | None = None
    incidents: tuple[uuid.UUID, ...] = ()
    problems: tuple[uuid.UUID, ...] = ()
    # The problem's change request this change answers (ProblemChangeRequestedV1.request_id).
    problem_request_id: uuid.UUID | None = None
    release_id: uuid.UUID | None = None
    outcome: str | None = None
    cancel_reason: str | None = None
    # Emergency changes: when the retrospective review is due.
    review_due_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def content_hash(self) -> str:
        """The hash of what its approvals approve (`content_hash`)."""
        return content_hash(self)

    @property
    def deviation(self) -> bool:
        """Whether implementation started before or ended after the planned window."""
        if self.planned_start is None or self.planned_end is None:
            return False
        early = self.actual_start is not None and self.actual_start < self.planned_start
        late = self.actual_end is not None and self.actual_end > self.planned_end
        return early or late


@dataclass(frozen=True)
class ChangeChange(Changed[Change]):
    """A new version of a change, what changed, and the events to publish."""

    @property
    def change(self) -> Change:
        """The new version."""
        return self.record


def content_hash(change: Change) -> str:
    """SHA-256 (hex) of the approved content: type, window, affected CIs (sorted), plans, as
    canonical JSON. Two versions with the same content have the same hash."""
    content = {name: change_value(getattr(change, name)) for name in APPROVED_CONTENT}
    content["affected_cis"] = sorted(content["affected_cis"])
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _window(start: datetime | None, end: datetime | None) -> None:
    if (start is None) != (end is None):
        missing = "planned_end" if end is None else "planned_start"
        raise ValidationFailed([FieldError(missing, "a planned window needs a start and an end")])
    if start is not None and end is not None and end <= start:
        raise ValidationFailed([FieldError("planned_end", "must be after planned_start")])


def _created(change: Change) -> ChangeCreatedV1:
    return ChangeCreatedV1(
        change_id=str(change.id),
        number=change.number,
        type=change.type,
        origin=change.origin,
        title=change.title,
        requester=change.requester,
        assignment_group=change.assignment_group,
        implementer=change.implementer,
        template_id=change_value(change.template_id),
        ci_ids=[str(ci) for ci in change.affected_cis],
        business_services=list(change.business_services),
        planned_start=change.planned_start,
        planned_end=change.planned_end,
        problem_ids=[str(p) for p in change.problems],
        incident_ids=[str(i) for i in change.incidents],
        problem_request_id=change_value(change.problem_request_id),
        content_hash=change.content_hash,
    )


def open_change(
    *,
    tenant_id: str,
    number: int,
    type: ChangeType,
    title: str,
    description: str,
    justification: str,
    requester: str,
    actor: str,
    now: datetime,
    origin: Origin = "manual",
    change_id: uuid.UUID | None = None,
    **fields: Any,
) -> tuple[Change, list[EventPayload]]:
    """Version 1 of a new change in state `new`, and the event that announces it. `fields` are
    the optional fields of `Change` (already validated against the CMDB by the caller)."""
    if type not in CHANGE_TYPES:
        raise ValidationFailed([FieldError("type", f"must be one of {', '.join(CHANGE_TYPES)}")])
    if not title.strip():
        raise ValidationFailed([FieldError("title", "a change needs a title")])
    if type == "emergency" and not fields.get("incidents"):
        raise ValidationFailed(
            [FieldError("incident_ids", "an emergency change needs a linked incident")]
        )
    _window(fields.get("planned_start"), fields.get("planned_end"))
    for name in ("affected_cis", "incidents", "problems", "business_services", "test_evidence"):
        if name in fields:
            fields[name] = tuple(dict.fromkeys(fields[name]))
    change = Change.first(
        id=change_id,
        tenant_id=tenant_id,
        actor=actor,
        now=now,
        state="new",
        number=number,
        type=type,
        origin=origin,
        title=title,
        description=description,
        justification=justification,
        requester=requester,
        **fields,
    )
    return change, [_created(change)]


def edit(change: Change, values: Mapping[str, Any], *, actor: str, now: datetime) -> ChangeChange:
    """The next version with these field values. Editing the approved content of a scheduled
    change voids its approvals (another content hash) and returns it to `authorize`; a change
    being implemented or later is not edited (`ValidationFailed` naming `state`)."""
    if change.state not in EDITABLE_STATES:
        raise ValidationFailed(
            [FieldError("state", f"a change in {change.state} is no longer edited")]
        )
    _window(
        values.get("planned_start", change.planned_start),
        values.get("planned_end", change.planned_end),
    )
    before_hash = change.content_hash
    after, changes = apply_change(change, values, actor=actor, now=now)
    after_hash = after.content_hash
    voided = after_hash != before_hash and change.state in APPROVED_STATES
    events: list[EventPayload] = []
    if changes:
        events.append(
            ChangeUpdatedV1(
                change_id=str(change.id),
                changes=changes,
                content_hash=after_hash,
                approvals_voided=voided,
            )
        )
    if voided:
        after, moved = move(after, CHANGE, "authorize", actor=actor, now=now)
        after = _same_version(after, change.version + 1)
        changes = {**changes, **moved}
        events.append(_transitioned(change, after, actor=actor, reason="approved content edited"))
    return ChangeChange(after, changes, events)


def _same_version(change: Change, version: int) -> Change:
    # An edit that also moves the change is one version, not two.
    return replace(change, version=version)


def _transitioned(
    before: Change, after: Change, *, actor: str, reason: str | None = None
) -> ChangeTransitionedV1:
    return ChangeTransitionedV1(
        change_id=str(after.id),
        number=after.number,
        type=after.type,
        from_state=before.state,
        to_state=after.state,
        outcome=after.outcome if after.state == "review" else None,
        reason=reason,
        problem_ids=[str(p) for p in after.problems],
        problem_request_id=change_value(after.problem_request_id),
        content_hash=after.content_hash,
    )


def check_type_route(change: Change, wanted: str) -> None:
    """Refuse a first move out of `new` that the change's type does not take (409 naming `to`):
    a standard change goes to scheduled, a normal one to assess, an emergency one to authorize."""
    if change.state != "new" or wanted == "cancelled":
        return
    expected = FIRST_MOVE[change.type]
    if wanted != expected:
        raise IllegalTransition("change", change.state, wanted, (expected, "cancelled"))


def transition(
    change: Change,
    wanted: str,
    *,
    actor: str,
    now: datetime,
    outcome: str | None = None,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> ChangeChange:
    """The next version in state `wanted`. Leaving `implement` records the outcome (and the
    actual end, unless given) and announces `ChangeImplementedV1` with the affected CIs;
    entering `implement` records the actual start; `closed` stamps `closed_at`."""
    check_type_route(change, wanted)
    extra: dict[str, Any] = dict(values or {})
    if wanted == "implement":
        extra.setdefault("actual_start", change.actual_start or now)
    if change.state == "implement" and wanted == "review":
        extra["outcome"] = outcome
        extra.setdefault("actual_end", change.actual_end or now)
    if wanted == "cancelled":
        extra["cancel_reason"] = reason
    if wanted == "closed":
        extra["closed_at"] = now
    details: dict[str, object | None] = {"outcome": outcome}
    if wanted == "cancelled":
        details["reason"] = reason
    after, changes = move(
        change, CHANGE, wanted, actor=actor, now=now, details=details, values=extra
    )
    events: list[EventPayload] = [_transitioned(change, after, actor=actor, reason=reason)]
    if change.state == "implement":
        assert after.actual_end is not None and after.outcome is not None
        events.append(
            ChangeImplementedV1(
                change_id=str(after.id),
                title=after.title,
                ci_ids=[str(ci) for ci in after.affected_cis],
                implemented_at=after.actual_end,
                outcome=after.outcome,
            )
        )
    return ChangeChange(after, changes, events)


def problems_and_incidents(
    problems: Sequence[uuid.UUID], incidents: Sequence[uuid.UUID]
) -> dict[str, tuple[uuid.UUID, ...]]:
    """The link fields of a change, deduplicated, first occurrence first."""
    return {
        "problems": tuple(dict.fromkeys(problems)),
        "incidents": tuple(dict.fromkeys(incidents)),
    }
