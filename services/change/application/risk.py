"""Risk of a change: gather its inputs once, score them (`domain/risk.py`), record the
assessment with the rule-set version, and set the change's `risk_level`.

The score is pure; this module is where the inputs come from:
- the blast radius walks the CMDB projection upstream from each affected CI
  (`shared/cmdb/walks.py`), `blast_radius_hops` of the rule set;
- the failure rate counts earlier changes on the same CIs or from the same template (the
  `changes` table: failed and rolled back over all with an outcome);
- the maintenance window and the open major incidents come through ports
  (`RiskSources`): `SCHEDULE_SOURCES` asks the change schedule (the maintenance windows
  covering the affected CIs) and the incident projection (open major incidents on the CIs and
  their business services); "unknown" (`UNKNOWN_SOURCES`, or nothing to compare with) adds
  nothing and says so in the factor's explanation;
- the lead time is the planned start minus now; `backout_tested` is the change's own flag.

Rule sets are versioned per tenant (`GET/PUT /risk-settings`); version 0 is the defaults.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.change.adapters.approvals import StoredAssessment
from services.change.application import schedule
from services.change.application.uow import ChangeWork, store_change
from services.change.domain.change import EDITABLE_STATES, Change, ChangeChange
from services.change.domain.risk import (
    RiskInputs,
    RiskRules,
    Score,
    ServiceAtRisk,
    factors_json,
    overridden_level,
    score,
)
from shared.errors import Conflict, FieldError, NotFound, StaleVersion
from shared.events.catalogue import (
    ChangeRiskAssessedV1,
    ChangeRiskSettingsChangedV1,
    ChangeUpdatedV1,
    EventPayload,
    RiskFactorV1,
)
from shared.records.record import apply_change

RULES_KIND = "risk"
SETTINGS_SUBJECT = "risk-settings"
# A port: whether the change's window is inside a maintenance window (None: unknown).
MaintenanceWindow = Callable[[ChangeWork, Change], Awaitable[bool | None]]
# A port: how many major incidents are open on the change's services or CIs (None: unknown).
MajorIncidents = Callable[[ChangeWork, Change], Awaitable[int | None]]


async def _unknown_window(uow: ChangeWork, change: Change) -> bool | None:
    return None


async def _unknown_incidents(uow: ChangeWork, change: Change) -> int | None:
    return None


@dataclass(frozen=True)
class RiskSources:
    """Where the inputs owned by other parts of the service come from."""

    maintenance_window: MaintenanceWindow = field(default=_unknown_window)
    major_incidents: MajorIncidents = field(default=_unknown_incidents)


UNKNOWN_SOURCES = RiskSources()
# What the service assesses with: the schedule's maintenance windows, the incident projection.
SCHEDULE_SOURCES = RiskSources(
    maintenance_window=schedule.inside_maintenance_window,
    major_incidents=schedule.major_incidents_open,
)
Assessment = StoredAssessment


async def risk_rules(uow: ChangeWork, version: int | None = None) -> tuple[int, RiskRules]:
    """The tenant's rule set in force (or of `version`), with its version (0: the defaults)."""
    stored = await uow.cab.rule_set(RULES_KIND, version)
    if version is not None and stored.version != version:
        raise NotFound("risk rule set", str(version))
    rules = RiskRules() if stored.body is None else RiskRules.model_validate(stored.body)
    return stored.version, rules


async def replace_risk_rules(
    uow: ChangeWork, rules: RiskRules, *, expected_version: int, now: datetime
) -> tuple[int, RiskRules]:
    """Store the rules as the next version if the caller read the current one (412
    otherwise); announce them."""
    await uow.cab.lock_rule_set(RULES_KIND)
    current, _ = await risk_rules(uow)
    if current != expected_version:
        raise StaleVersion("the risk settings", current, expected_version)
    version = current + 1
    body = rules.model_dump(mode="json")
    await uow.cab.add_rule_set(RULES_KIND, version, body, at=now, actor=uow.context.actor)
    uow.record(
        SETTINGS_SUBJECT, version, [ChangeRiskSettingsChangedV1(version=version, rules=body)]
    )
    return version, rules


async def gather_inputs(
    uow: ChangeWork, change: Change, rules: RiskRules, *, now: datetime, sources: RiskSources
) -> RiskInputs:
    """Everything the score reads about the change, now."""
    reached, services = await uow.cab.blast_radius(change.affected_cis, rules.blast_radius_hops)
    done, failed = await uow.cab.earlier_outcomes(
        change.id, change.affected_cis, change.template_id
    )
    lead = None
    if change.planned_start is not None:
        lead = round((change.planned_start - now).total_seconds() / 3600, 2)
    return RiskInputs(
        cis_reached=reached,
        services=tuple(ServiceAtRisk(s, c) for s, c in services),
        earlier_implemented=done,
        earlier_failed=failed,
        inside_maintenance_window=await sources.maintenance_window(uow, change),
        lead_time_hours=lead,
        backout_tested=change.backout_tested,
        open_major_incidents=await sources.major_incidents(uow, change),
    )


async def assess(
    uow: ChangeWork,
    change: Change,
    *,
    now: datetime | None = None,
    level: str | None = None,
    reason: str | None = None,
    sources: RiskSources = UNKNOWN_SOURCES,
) -> Assessment:
    """Assess the change (locked by the caller) under the tenant's rule set in force: record
    the assessment, set the change's risk level (a new version), announce both. `level`
    overrides the computed level and then needs a `reason` (422 naming it)."""
    now = now or datetime.now(UTC)
    if change.state not in EDITABLE_STATES:
        raise Conflict(
            f"a change in {change.state} is no longer assessed",
            fields=[FieldError("state", f"assessed in {', '.join(sorted(EDITABLE_STATES))}")],
        )
    version, rules = await risk_rules(uow)
    inputs = await gather_inputs(uow, change, rules, now=now, sources=sources)
    result = score(inputs, rules)
    in_force = overridden_level(result, level, reason)
    assessment = StoredAssessment(
        id=uuid.uuid4(),
        change_id=change.id,
        change_version=change.version + 1,
        rule_set_version=version,
        inputs=inputs.as_json(),
        factors=factors_json(result.factors),
        score=result.score,
        computed_level=result.level,
        level=in_force,
        override_reason=reason.strip() if level is not None and reason else None,
        assessed_at=now,
        assessed_by=uow.context.actor,
    )
    after, changes = apply_change(
        change, {"risk_level": in_force}, actor=uow.context.actor, now=now
    )
    events: list[EventPayload] = [_assessed(assessment)]
    if changes:
        events.append(
            ChangeUpdatedV1(
                change_id=str(change.id), changes=changes, content_hash=after.content_hash
            )
        )
    await store_change(uow, ChangeChange(after, changes, events), "risk assessed")
    await uow.cab.add_assessment(assessment)
    return assessment


async def assess_change(
    uow: ChangeWork,
    change_id: uuid.UUID,
    *,
    now: datetime,
    level: str | None = None,
    reason: str | None = None,
    sources: RiskSources = UNKNOWN_SOURCES,
) -> Assessment:
    """Assess a change by id (404 when the tenant has none)."""
    change = await uow.changes.get(change_id, lock=True)
    if change is None:
        raise NotFound("change", str(change_id))
    return await assess(uow, change, now=now, level=level, reason=reason, sources=sources)


async def assessments(uow: ChangeWork, change_id: uuid.UUID) -> list[Assessment]:
    """The change's assessments, newest first (404 for a change the tenant does not have)."""
    if await uow.changes.get(change_id) is None:
        raise NotFound("change", str(change_id))
    return await uow.cab.assessments(change_id)


async def replay(uow: ChangeWork, assessment: Assessment) -> Score:
    """Score a recorded assessment's inputs again under the rule set it names."""
    _, rules = await risk_rules(uow, assessment.rule_set_version)
    return score(RiskInputs.from_json(assessment.inputs), rules)


def _assessed(a: Assessment) -> ChangeRiskAssessedV1:
    return ChangeRiskAssessedV1(
        change_id=str(a.change_id),
        assessment_id=str(a.id),
        rule_set_version=a.rule_set_version,
        inputs=a.inputs,
        factors=[RiskFactorV1.model_validate(f) for f in a.factors],
        score=a.score,
        computed_level=a.computed_level,
        level=a.level,
        override_reason=a.override_reason,
    )


def assessment_view(a: Assessment) -> dict[str, Any]:
    """An assessment as the API shows it."""
    return {
        "id": str(a.id),
        "change_id": str(a.change_id),
        "change_version": a.change_version,
        "rule_set_version": a.rule_set_version,
        "inputs": a.inputs,
        "factors": a.factors,
        "score": a.score,
        "computed_level": a.computed_level,
        "level": a.level,
        "override_reason": a.override_reason,
        "assessed_at": a.assessed_at.isoformat(),
        "assessed_by": a.assessed_by,
    }
