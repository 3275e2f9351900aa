"""Change record use cases (ISO/IEC 20000-1 8.5.1): each runs in one unit of work with its
events (`ChangeUnitOfWork`), in the pattern of the incident service's problems.

- **Raise** (`raise_change_in`): affected CIs are validated against the CMDB projection (an
  unknown or retired CI is a 422 naming `affected_ci_ids[i]`) and the business services are
  derived from them; linked incidents must be known to the incident projection (422 naming
  `incident_ids`; an emergency change needs one). A standard change needs an active template
  of the catalogue, takes its plans and risk `low`, and goes `new -> scheduled` in the same
  transaction.
- **Edit** (`edit_change_in`, If-Match): `domain.change.edit`; an edit of approved content of a
  scheduled change voids its approvals and returns it to `authorize`. The actual start and end
  are recorded while implementing or in review.
- **Transition** (If-Match): the state machine, plus the rules here: `authorize -> scheduled`
  is the approvals' doing (409); leaving `implement` with an outcome other than the proposed one
  needs `outcome_reason` (422); an emergency change's review falls due the tenant's number of
  days after its implementation ended; `review -> closed` needs a PIR when one is required
  (409 naming `review`).
- **Evidence**: a backout executed (`backout_in`), the PIR (`review_in`) and the outcome
  proposal (`outcome_proposal_in`) from backouts, failed deployments and suspected incidents.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.change.application import schedule
from services.change.application.ports import Backout, Review
from services.change.application.uow import (
    ChangeUnitOfWork,
    ChangeWork,
    store_change,
    store_new_change,
)
from services.change.domain import change as domain
from services.change.domain.change import Change, ChangeChange
from services.change.domain.records import (
    Evidence,
    OutcomeProposal,
    check_template_covers,
    propose_outcome,
    review_due,
    review_reasons,
)
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.errors import Conflict, FieldError, NotFound, ValidationFailed, invalid_field
from shared.events.catalogue import (
    ChangeBackoutExecutedV1,
    ChangeCreatedV1,
    ChangeReviewedV1,
    ChangeTransitionedV1,
    ChangeUpdatedV1,
    EventPayload,
)
from shared.records.record import apply_change
from shared.records.sql import Condition
from shared.uow import Recorded

# Fields a PATCH may change before implementation (domain.edit).
EDITABLE = (
    "title",
    "description",
    "justification",
    "assignment_group",
    "implementer",
    "affected_cis",
    "planned_start",
    "planned_end",
    "implementation_plan",
    "backout_plan",
    "test_plan",
    "test_evidence",
    "backout_tested",
    "impact",
    "type",
)
# Fields recorded while implementing or in review.
ACTUALS = ("actual_start", "actual_end")
IMPLEMENTED = frozenset({"implement", "review", "closed"})


@dataclass(frozen=True)
class NewChange:
    """Command: raise a request for change."""

    type: str
    title: str
    description: str = ""
    justification: str = ""
    requester: str | None = None
    assignment_group: str | None = None
    implementer: str | None = None
    template_id: uuid.UUID | None = None
    affected_cis: tuple[uuid.UUID, ...] = ()
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    implementation_plan: str | None = None
    backout_plan: str | None = None
    test_plan: str | None = None
    test_evidence: tuple[str, ...] = ()
    backout_tested: bool = False
    impact: str | None = None
    incidents: tuple[uuid.UUID, ...] = ()
    problems: tuple[uuid.UUID, ...] = ()
    # A standard change scheduled into a blackout needs an emergency override's reason.
    blackout_override_reason: str | None = None


@dataclass(frozen=True)
class ChangeFilter:
    """What a change search matches (every given part)."""

    states: tuple[str, ...] = ()
    type: str | None = None
    ci_id: uuid.UUID | None = None
    service: str | None = None
    requester: str | None = None
    # Changes whose planned window overlaps [window_from, window_to).
    window_from: datetime | None = None
    window_to: datetime | None = None


@dataclass(frozen=True)
class ProposalView:
    """The outcome proposal and the evidence behind it."""

    proposal: OutcomeProposal
    evidence: Evidence
    suspected: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def change_view(change: Change) -> dict[str, Any]:
    """The change as the API shows it (JSON-ready)."""
    view = asdict(change)
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
        elif isinstance(value, tuple):
            view[name] = [str(v) for v in value]
    view["reference"] = change.reference
    view["affected_ci_ids"] = view.pop("affected_cis")
    view["incident_ids"] = view.pop("incidents")
    view["problem_ids"] = view.pop("problems")
    view["content_hash"] = change.content_hash
    view["deviation"] = change.deviation
    return view


def _reader(tenant_id: str) -> RequestContext:
    # Reads record nothing, so nobody is named as their actor.
    return RequestContext(tenant_id, "reader", "")


# --- Validation against the projections -------------------------------------------------------


async def _scope(
    uow: ChangeWork, cis: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, str], list[str]]:
    """Each affected CI's class, and the business services they support (sorted); 422 naming
    every unknown or retired CI as `affected_ci_ids[i]`."""
    classes: dict[uuid.UUID, str] = {}
    errors: list[FieldError] = []
    services: set[str] = set()
    for i, ci_id in enumerate(cis):
        ci = await uow.projection.ci(ci_id)
        if ci is None:
            errors.append(FieldError(f"affected_ci_ids[{i}]", f"no configuration item {ci_id}"))
        elif ci.status == "retired":
            errors.append(FieldError(f"affected_ci_ids[{i}]", f"CI {ci.name} is retired"))
        else:
            classes[ci_id] = ci.ci_class
            services.update(await uow.projection.services_of_ci(ci_id))
    if errors:
        raise ValidationFailed(errors)
    return classes, sorted(services)


async def _known_incidents(uow: ChangeWork, incidents: Sequence[uuid.UUID]) -> None:
    unknown = await uow.projection.unknown_incidents(incidents)
    if unknown:
        names = ", ".join(str(i) for i in unknown)
        raise invalid_field(
            "incident_ids",
            f"incidents not known (yet) to the change service: {names}; an incident logged a"
            " moment ago may still be on its way, retry shortly",
        )


# --- Use cases on a unit of work -------------------------------------------------------------


async def raise_change_in(
    uow: ChangeWork,
    command: NewChange,
    *,
    origin: str = "manual",
    problem_request_id: uuid.UUID | None = None,
    check_incidents: bool = True,
    now: datetime | None = None,
) -> Change:
    """Raise a change (CHG<n>); a standard one from its template, straight to scheduled."""
    now = now or datetime.now(UTC)
    cis = tuple(dict.fromkeys(command.affected_cis))
    classes, services = await _scope(uow, cis)
    if check_incidents:
        await _known_incidents(uow, command.incidents)
    fields: dict[str, Any] = {
        "assignment_group": command.assignment_group,
        "implementer": command.implementer,
        "affected_cis": cis,
        "business_services": tuple(services),
        "planned_start": command.planned_start,
        "planned_end": command.planned_end,
        "implementation_plan": command.implementation_plan,
        "backout_plan": command.backout_plan,
        "test_plan": command.test_plan,
        "test_evidence": command.test_evidence,
        "backout_tested": command.backout_tested,
        "impact": command.impact,
        "incidents": command.incidents,
        "problems": command.problems,
        "problem_request_id": problem_request_id,
    }
    if command.type == "standard":
        template = await _active_template(uow, command.template_id)
        check_template_covers(template, classes)
        fields.update(
            template_id=template.id,
            implementation_plan=command.implementation_plan or template.implementation_plan,
            backout_plan=command.backout_plan or template.backout_plan,
            test_plan=command.test_plan or template.test_plan,
            risk_level=template.risk_level,
        )
        if template.business_service and template.business_service not in services:
            fields["business_services"] = tuple(sorted({*services, template.business_service}))
    elif command.template_id is not None:
        raise invalid_field("template_id", "only a standard change is raised from a template")
    change, events = domain.open_change(
        tenant_id=uow.tenant_id,
        number=await uow.changes.next_number(),
        type=command.type,  # type: ignore[arg-type]  # checked by open_change
        title=command.title,
        description=command.description,
        justification=command.justification,
        requester=command.requester or uow.context.actor,
        actor=uow.context.actor,
        now=now,
        origin=origin,  # type: ignore[arg-type]
        **fields,
    )
    await store_new_change(uow, change, events)
    if change.type == "standard":
        # Pre-approved: scheduled in the same transaction, unless a blackout covers its window
        # (409 naming each blackout and its CIs) and no override reason is given.
        await schedule.check_schedulable(
            uow, change, override_reason=command.blackout_override_reason
        )
        moved = domain.transition(change, "scheduled", actor=uow.context.actor, now=now)
        change = await store_change(uow, moved, "transitioned")
    return change


async def _active_template(uow: ChangeWork, template_id: uuid.UUID | None) -> Any:
    if template_id is None:
        raise invalid_field("template_id", "a standard change is raised from a template")
    template = await uow.templates.get(template_id)
    if template is None:
        raise invalid_field("template_id", f"no standard change template {template_id}")
    if not template.active:
        raise invalid_field("template_id", f"the template {template.name!r} is not active")
    return template


async def _locked(uow: ChangeWork, change_id: uuid.UUID, expected: int | None) -> Change:
    return await uow.changes.locked(change_id, expected)


async def edit_change_in(
    uow: ChangeWork,
    change_id: uuid.UUID,
    values: Mapping[str, Any],
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> Change:
    """Edit a change's fields (its actual start and end while implementing or in review)."""
    now = now or datetime.now(UTC)
    change = await _locked(uow, change_id, expected_version)
    values = dict(values)
    actuals = {k: values.pop(k) for k in ACTUALS if k in values}
    if actuals:
        return await _record_actuals(uow, change, actuals, values, now)
    if "type" in values and values["type"] != change.type:
        if "standard" in (values["type"], change.type):
            raise invalid_field(
                "type",
                "a standard change is raised from a template, never edited into or out of one",
            )
        if values["type"] == "emergency" and not change.incidents:
            raise invalid_field("incident_ids", "an emergency change needs a linked incident")
    if "affected_cis" in values:
        cis = tuple(dict.fromkeys(values["affected_cis"]))
        _, services = await _scope(uow, cis)
        values["affected_cis"] = cis
        values["business_services"] = tuple(services)
    if "test_evidence" in values:
        values["test_evidence"] = tuple(values["test_evidence"])
    edited = domain.edit(change, values, actor=uow.context.actor, now=now)
    if not edited.changes:
        return change
    return await store_change(uow, edited, "updated")


async def _record_actuals(
    uow: ChangeWork,
    change: Change,
    actuals: dict[str, Any],
    others: dict[str, Any],
    now: datetime,
) -> Change:
    if others:
        fields = ", ".join(sorted(others))
        raise invalid_field(
            sorted(others)[0], f"the actual start and end are recorded alone (not with {fields})"
        )
    if change.state not in IMPLEMENTED - {"closed"}:
        raise ValidationFailed(
            [
                FieldError(name, f"recorded while implementing or in review, not in {change.state}")
                for name in actuals
            ]
        )
    start = actuals.get("actual_start", change.actual_start)
    end = actuals.get("actual_end", change.actual_end)
    if start is not None and end is not None and end < start:
        raise invalid_field("actual_end", "must not be before actual_start")
    after, changes = apply_change(change, actuals, actor=uow.context.actor, now=now)
    if not changes:
        return change

    events: list[EventPayload] = [
        ChangeUpdatedV1(change_id=str(change.id), changes=changes, content_hash=after.content_hash)
    ]
    return await store_change(uow, ChangeChange(after, changes, events), "updated")


async def link_in(
    uow: ChangeWork,
    change_id: uuid.UUID,
    *,
    incidents: Sequence[uuid.UUID],
    problems: Sequence[uuid.UUID],
    expected_version: int | None,
    now: datetime | None = None,
) -> Change:
    """Link incidents and problems to a change (links already there change nothing)."""
    change = await _locked(uow, change_id, expected_version)
    await _known_incidents(uow, [i for i in incidents if i not in change.incidents])
    values = domain.problems_and_incidents(
        [*change.problems, *problems], [*change.incidents, *incidents]
    )
    edited = domain.edit(change, values, actor=uow.context.actor, now=now or datetime.now(UTC))
    if not edited.changes:
        return change
    return await store_change(uow, edited, "linked")


async def outcome_proposal_in(
    uow: ChangeWork, change: Change, *, now: datetime | None = None
) -> ProposalView:
    """The outcome the evidence proposes for a change being (or having been) implemented."""
    now = now or datetime.now(UTC)
    if change.state not in IMPLEMENTED:
        raise Conflict(
            f"a change in {change.state} has no implementation to judge yet",
            fields=[FieldError("state", "allowed: implement, review, closed")],
        )
    settings = await uow.change_settings.get()
    window = timedelta(seconds=settings.suspicion_window_seconds)
    until = (change.actual_end or now) + window
    suspected = [s for s in await uow.evidence.suspected(change.id) if s.flagged_at <= until]
    backout = await uow.evidence.backout(change.id)
    evidence = Evidence(
        backout_executed=backout is not None,
        failed_deployments=tuple(await uow.evidence.failed_deployments(change.id)),
        suspected_incidents=tuple(s.incident_id for s in suspected),
    )
    shown = tuple(
        {
            "incident_id": str(s.incident_id),
            "ci_id": s.ci_id,
            "flagged_at": s.flagged_at.isoformat(),
        }
        for s in suspected
    )
    return ProposalView(propose_outcome(evidence), evidence, shown)


async def transition_change_in(
    uow: ChangeWork,
    change_id: uuid.UUID,
    wanted: str,
    *,
    expected_version: int | None,
    outcome: str | None = None,
    reason: str | None = None,
    outcome_reason: str | None = None,
    now: datetime | None = None,
) -> Change:
    """Move a change by hand (cancelling needs a reason, leaving implement an outcome)."""
    now = now or datetime.now(UTC)
    change = await _locked(uow, change_id, expected_version)
    if change.state == "authorize" and wanted == "scheduled":
        raise Conflict(
            "a change is scheduled when its approvals complete, not by hand",
            fields=[FieldError("to", "allowed from authorize by hand: assess, cancelled")],
            extensions={"allowed": ["assess", "cancelled"]},
        )
    values: dict[str, Any] = {}
    proposed: OutcomeProposal | None = None
    if change.state == "implement" and wanted == "review" and outcome is not None:
        proposed = (await outcome_proposal_in(uow, change, now=now)).proposal
        if outcome != proposed.outcome and not (outcome_reason or "").strip():
            raise invalid_field(
                "outcome_reason",
                f"the evidence proposes {proposed.outcome}: say why the outcome is {outcome}",
            )
        if change.type == "emergency":
            settings = await uow.change_settings.get()
            values["review_due_at"] = review_due(change.actual_end or now, settings)
    if change.state == "review" and wanted == "closed":
        await _check_review(uow, change)
    moved = domain.transition(
        change,
        wanted,
        actor=uow.context.actor,
        now=now,
        outcome=outcome,
        reason=reason,
        values=values,
    )
    if proposed is not None:
        moved = ChangeChange(
            moved.change,
            moved.changes,
            [
                e.model_copy(
                    update={"proposed_outcome": proposed.outcome, "outcome_reason": outcome_reason}
                )
                if isinstance(e, ChangeTransitionedV1)
                else e
                for e in moved.events
            ],
        )
    return await store_change(uow, moved, "transitioned")


async def _check_review(uow: ChangeWork, change: Change) -> None:
    settings = await uow.change_settings.get()
    reasons = review_reasons(
        change_type=change.type,
        outcome=change.outcome,
        risk_level=change.risk_level,
        settings=settings,
    )
    if reasons and await uow.evidence.review(change.id) is None:
        raise Conflict(
            f"a post-implementation review is required before closure: {'; '.join(reasons)}",
            fields=[FieldError("review", "POST /changes/{id}/review first")],
        )


async def backout_in(
    uow: ChangeWork,
    change_id: uuid.UUID,
    *,
    reason: str,
    expected_version: int | None,
    now: datetime | None = None,
) -> Change:
    """Record that the backout plan was executed while implementing (once)."""
    now = now or datetime.now(UTC)
    change = await _locked(uow, change_id, expected_version)
    if change.state != "implement":
        raise Conflict(
            f"a backout is executed while implementing, not in {change.state}",
            fields=[FieldError("state", "allowed: implement")],
        )
    if await uow.evidence.backout(change.id) is not None:
        raise Conflict(
            "the backout of this change was already recorded",
            fields=[FieldError("reason", "recorded once")],
        )
    await uow.evidence.add_backout(Backout(change.id, reason, uow.context.actor, now))
    after, _ = apply_change(change, {}, actor=uow.context.actor, now=now)
    changes = {"backout": {"from": None, "to": reason}}
    events: list[EventPayload] = [ChangeBackoutExecutedV1(change_id=str(change.id), reason=reason)]
    return await store_change(uow, ChangeChange(after, changes, events), "backout_executed")


async def review_in(
    uow: ChangeWork,
    change_id: uuid.UUID,
    *,
    what_happened: str,
    lessons: str,
    actions: Sequence[str],
    expected_version: int | None,
    now: datetime | None = None,
) -> Change:
    """Record the post-implementation review of a change in review (once)."""
    now = now or datetime.now(UTC)
    change = await _locked(uow, change_id, expected_version)
    if change.state != "review":
        raise Conflict(
            f"a change is reviewed in review, not in {change.state}",
            fields=[FieldError("state", "allowed: review")],
        )
    if await uow.evidence.review(change.id) is not None:
        raise Conflict(
            "this change was already reviewed", fields=[FieldError("review", "recorded once")]
        )
    actor = uow.context.actor
    await uow.evidence.add_review(
        Review(change.id, what_happened, lessons, tuple(actions), actor, now)
    )
    after, _ = apply_change(change, {}, actor=actor, now=now)
    changes = {
        "review": {
            "from": None,
            "to": {"what_happened": what_happened, "lessons": lessons, "actions": list(actions)},
        }
    }
    events: list[EventPayload] = [
        ChangeReviewedV1(
            change_id=str(change.id),
            number=change.number,
            outcome=change.outcome,
            what_happened=what_happened,
            lessons=lessons,
            actions=list(actions),
            reviewer=actor,
        )
    ]
    return await store_change(uow, ChangeChange(after, changes, events), "reviewed")


async def change_in(uow: ChangeWork, change_id: uuid.UUID) -> Change:
    """The tenant's change, or `NotFound`."""
    change = await uow.changes.get(change_id)
    if change is None:
        raise NotFound("change", str(change_id))
    return change


def conditions(where: ChangeFilter) -> list[Condition]:
    """The search's SQL conditions (every part optional)."""
    return [
        Condition("(cardinality({p}::text[]) = 0 OR r.state = ANY({p}))", list(where.states)),
        Condition("({p}::text IS NULL OR r.type = {p})", where.type),
        Condition("({p}::uuid IS NULL OR {p} = ANY(r.affected_cis))", where.ci_id),
        Condition("({p}::text IS NULL OR {p} = ANY(r.business_services))", where.service),
        Condition("({p}::text IS NULL OR r.requester = {p})", where.requester),
        Condition("({p}::timestamptz IS NULL OR r.planned_end > {p})", where.window_from),
        Condition("({p}::timestamptz IS NULL OR r.planned_start < {p})", where.window_to),
    ]


# --- Metrics ---------------------------------------------------------------------------------


def observe(
    metrics: ChangeMetrics | None, recorded: Sequence[Recorded], changes: Sequence[Change]
) -> None:
    """Count what a committed unit of work did: changes raised, moves, outcomes, lead time."""
    if metrics is None:
        return
    created = {c.id: c for c in changes}
    for item in recorded:
        payload = item.payload
        if isinstance(payload, ChangeCreatedV1):
            metrics.changes_created.labels(payload.type, payload.origin).inc()
        elif isinstance(payload, ChangeTransitionedV1):
            metrics.transitions.labels(payload.type, payload.to_state).inc()
            if payload.from_state == "implement" and payload.outcome is not None:
                metrics.outcomes.labels(payload.type, payload.outcome).inc()
                change = created.get(uuid.UUID(payload.change_id))
                if change is not None and change.actual_end is not None:
                    seconds = (change.actual_end - change.created_at).total_seconds()
                    metrics.lead_time.labels(payload.type).observe(max(0.0, seconds))


# --- Use cases on the pool (the HTTP API's) ---------------------------------------------------


class ChangeService:
    """The use cases as the HTTP API calls them: one unit of work each, metrics after commit."""

    def __init__(self, pool: asyncpg.Pool, metrics: ChangeMetrics | None) -> None:
        self.pool = pool
        self.metrics = metrics

    async def _run(self, context: RequestContext, call: Any, *args: Any, **kwargs: Any) -> Change:
        async with ChangeUnitOfWork(self.pool, context) as uow:
            change: Change = await call(uow, *args, **kwargs)
            recorded = uow.recorded
        observe(self.metrics, recorded, [change])
        return change

    async def raise_change(self, context: RequestContext, command: NewChange) -> Change:
        """Raise a change."""
        return await self._run(context, raise_change_in, command)

    async def edit(
        self,
        context: RequestContext,
        change_id: uuid.UUID,
        values: Mapping[str, Any],
        expected: int,
    ) -> Change:
        """Edit a change (If-Match)."""
        return await self._run(
            context, edit_change_in, change_id, values, expected_version=expected
        )

    async def transition(
        self,
        context: RequestContext,
        change_id: uuid.UUID,
        wanted: str,
        expected: int,
        **details: Any,
    ) -> Change:
        """Move a change (If-Match)."""
        return await self._run(
            context, transition_change_in, change_id, wanted, expected_version=expected, **details
        )

    async def link(
        self,
        context: RequestContext,
        change_id: uuid.UUID,
        expected: int,
        *,
        incidents: Sequence[uuid.UUID],
        problems: Sequence[uuid.UUID],
    ) -> Change:
        """Link incidents and problems (If-Match)."""
        return await self._run(
            context,
            link_in,
            change_id,
            incidents=incidents,
            problems=problems,
            expected_version=expected,
        )

    async def backout(
        self, context: RequestContext, change_id: uuid.UUID, expected: int, reason: str
    ) -> Change:
        """Record a backout executed (If-Match)."""
        return await self._run(
            context, backout_in, change_id, reason=reason, expected_version=expected
        )

    async def review(
        self, context: RequestContext, change_id: uuid.UUID, expected: int, **review: Any
    ) -> Change:
        """Record the PIR (If-Match)."""
        return await self._run(context, review_in, change_id, expected_version=expected, **review)

    async def get(self, tenant_id: str, change_id: uuid.UUID) -> Change:
        """The tenant's change, or `NotFound`."""
        async with ChangeUnitOfWork(self.pool, _reader(tenant_id)) as uow:
            return await change_in(uow, change_id)

    async def history(self, tenant_id: str, change_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every version of a change, oldest first."""
        async with ChangeUnitOfWork(self.pool, _reader(tenant_id)) as uow:
            await change_in(uow, change_id)
            return await uow.changes.history(change_id)

    async def search(
        self,
        tenant_id: str,
        where: ChangeFilter,
        *,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Change]:
        """Changes matching the filter, newest first, after a (created_at, id) position."""
        async with ChangeUnitOfWork(self.pool, _reader(tenant_id)) as uow:
            return await uow.changes.search(conditions(where), after=after, limit=limit)

    async def outcome_proposal(self, tenant_id: str, change_id: uuid.UUID) -> ProposalView:
        """The outcome the evidence proposes."""
        async with ChangeUnitOfWork(self.pool, _reader(tenant_id)) as uow:
            return await outcome_proposal_in(uow, await change_in(uow, change_id))

    async def review_of(self, tenant_id: str, change_id: uuid.UUID) -> Review | None:
        """A change's PIR, if recorded."""
        async with ChangeUnitOfWork(self.pool, _reader(tenant_id)) as uow:
            await change_in(uow, change_id)
            return await uow.evidence.review(change_id)
