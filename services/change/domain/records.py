"""Rules of a change's life beyond its state machine (pure): the tenant's change settings, the
standard change catalogue, the outcome proposed from evidence, and when a post-implementation
review (PIR) is required before closure.

- **Settings** (`ChangeSettings`): days until an emergency change's retrospective review is
  due, which outcomes and risk levels need a PIR, and the window after implementation within
  which an incident flagged as possibly caused by the change counts as evidence.
- **Templates** (`Template`): a pre-approved standard change (risk `low`); a standard change
  is raised only from an active template, with its plans, and goes straight to `scheduled`.
- **Outcome proposal** (`propose_outcome`): backout executed -> `rolled_back`; a failed
  deployment -> `failed`; incidents suspected -> `successful_with_issues`; else `successful`.
- **PIR** (`review_reasons`): failed, rolled back, emergency, and risk levels the tenant lists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from shared.errors import FieldError, ValidationFailed

# Outcomes and risk levels a tenant may name in its settings.
PIR_OUTCOMES: Final[tuple[str, ...]] = ("successful_with_issues", "failed", "rolled_back")
RISK_LEVELS: Final[tuple[str, ...]] = ("low", "medium", "high", "very_high")


@dataclass(frozen=True)
class ChangeSettings:
    """A tenant's change settings (the defaults until it saves its own: version 0)."""

    emergency_review_days: int = 5
    # Outcomes after which a PIR is required (failed and rolled back always are).
    review_outcomes: tuple[str, ...] = ("failed", "rolled_back")
    # Risk levels after which a PIR is required.
    review_risk_levels: tuple[str, ...] = ("high", "very_high")
    # An incident flagged within this long after the implementation counts as evidence.
    suspicion_window_seconds: int = 86_400
    version: int = 0


@dataclass(frozen=True)
class Template:
    """A standard change in the tenant's catalogue (pre-approved; risk low)."""

    id: uuid.UUID
    name: str
    description: str
    implementation_plan: str
    backout_plan: str
    test_plan: str
    ci_ids: tuple[uuid.UUID, ...] = ()
    ci_classes: tuple[str, ...] = ()
    business_service: str | None = None
    risk_level: str = "low"
    active: bool = True
    version: int = 1
    created_at: datetime | None = None
    created_by: str = ""
    updated_at: datetime | None = None
    updated_by: str = ""


def check_template_covers(template: Template, cis: dict[uuid.UUID, str]) -> None:
    """Refuse (422 naming `affected_ci_ids[i]`) a CI the template does not apply to; `cis`
    maps each affected CI to its class. A template naming neither CIs nor classes applies to
    any CI."""
    if not template.ci_ids and not template.ci_classes:
        return
    errors = [
        FieldError(
            f"affected_ci_ids[{i}]",
            f"the standard change template {template.name!r} does not apply to CI {ci}",
        )
        for i, (ci, ci_class) in enumerate(cis.items())
        if ci not in template.ci_ids and ci_class not in template.ci_classes
    ]
    if errors:
        raise ValidationFailed(errors)


@dataclass(frozen=True)
class Evidence:
    """What is known of a change's implementation when its outcome is proposed."""

    backout_executed: bool = False
    failed_deployments: tuple[str, ...] = ()
    suspected_incidents: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class OutcomeProposal:
    """The outcome the evidence proposes, and why (one line per piece of evidence used)."""

    outcome: str
    reasons: tuple[str, ...] = field(default_factory=tuple)


def propose_outcome(evidence: Evidence) -> OutcomeProposal:
    """The outcome the evidence proposes: the worst that applies."""
    if evidence.backout_executed:
        return OutcomeProposal("rolled_back", ("the backout plan was executed",))
    if evidence.failed_deployments:
        ids = ", ".join(evidence.failed_deployments)
        return OutcomeProposal("failed", (f"failed deployments: {ids}",))
    if evidence.suspected_incidents:
        count = len(evidence.suspected_incidents)
        return OutcomeProposal(
            "successful_with_issues",
            (f"{count} incident(s) flagged as possibly caused by the change",),
        )
    return OutcomeProposal("successful", ("no backout, failed deployment or suspected incident",))


def review_reasons(
    *, change_type: str, outcome: str | None, risk_level: str | None, settings: ChangeSettings
) -> list[str]:
    """Why a change needs a PIR before closure (empty: it does not)."""
    reasons = []
    if outcome in ("failed", "rolled_back") or (
        outcome is not None and outcome in settings.review_outcomes
    ):
        reasons.append(f"its outcome is {outcome}")
    if change_type == "emergency":
        reasons.append("it is an emergency change")
    if risk_level is not None and risk_level in settings.review_risk_levels:
        reasons.append(f"its risk is {risk_level}")
    return reasons


def review_due(implemented_at: datetime, settings: ChangeSettings) -> datetime:
    """When an emergency change's retrospective review is due."""
    return implemented_at + timedelta(days=settings.emergency_review_days)
