"""A change's risk, explainable and replayable: a pure score of recorded inputs under a rule set.

`score(inputs, rules)` is the whole decision. It reads nothing and knows no clock: the
application gathers the inputs once (`application/risk.py`), stores them with the rule set's
version beside the result, and anyone can replay a stored assessment and get the same score,
level and factors (`tests/integration/test_change_risk.py` replays every one recorded).

Each factor returns its input and its contribution in points, so the API explains the score:

- `blast_radius`: CIs reached walking N hops upstream from the affected ones, and the business
  services reached or supported with their criticality (1 = most critical): points per CI plus
  points per service times (5 - criticality), capped.
- `failure_rate`: earlier changes on the same CIs or from the same template that failed or were
  rolled back, over all implemented: weight x rate (nothing without history).
- `maintenance_window`: inside, outside or unknown (no schedule to ask): weight when outside.
- `lead_time`: hours from the assessment to the planned start: weight x the shortfall under
  the target lead time (no planned start counts as now).
- `backout_tested`: weight when the backout plan is untested.
- `major_incidents`: open major incidents on the affected services or CIs: weight each, capped
  (unknown without an incident projection: nothing, and it says so).

The level is the highest threshold the score reaches. Every number is rounded to two decimals
at each step, so a replay from JSON gives exactly the stored values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from shared.errors import invalid_field
from shared.models import RequestBody

RiskLevel = Literal["low", "medium", "high"]
RISK_LEVELS: Final[tuple[str, ...]] = ("low", "medium", "high")
# The least critical a CI or service can be (config service: 1 = most critical .. 4).
LEAST_CRITICAL: Final = 4


class RiskWeights(RequestBody):
    """Points each factor can add."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_ci: float = Field(default=1.0, ge=0, le=100, description="Points per CI reached.")
    per_service_criticality: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="Points per business service, times (5 - its criticality).",
    )
    blast_radius_cap: float = Field(
        default=40.0, ge=0, le=1000, description="The most the blast radius adds."
    )
    failure_rate: float = Field(
        default=25.0, ge=0, le=1000, description="Points at a 100 % failure rate."
    )
    outside_maintenance_window: float = Field(default=15.0, ge=0, le=1000)
    short_lead_time: float = Field(
        default=10.0, ge=0, le=1000, description="Points for a change starting now."
    )
    lead_time_target_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 365,
        description="A start this far ahead (or more) adds nothing for lead time.",
    )
    backout_untested: float = Field(default=10.0, ge=0, le=1000)
    per_major_incident: float = Field(default=10.0, ge=0, le=1000)
    major_incidents_cap: float = Field(default=30.0, ge=0, le=1000)


class RiskThresholds(RequestBody):
    """The score from which each level applies (below `medium`: low)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    medium: float = Field(default=30.0, ge=0)
    high: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RiskThresholds:
        if self.high < self.medium:
            raise ValueError("high must not be below medium")
        return self


class RiskRules(RequestBody):
    """A tenant's risk rule set: weights, level thresholds and the CMDB hops of the blast
    radius. Stored versioned; version 0 is these defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: RiskWeights = Field(default_factory=RiskWeights)
    thresholds: RiskThresholds = Field(default_factory=RiskThresholds)
    blast_radius_hops: int = Field(
        default=2, ge=1, le=10, description="How far up the CMDB graph the blast radius walks."
    )


@dataclass(frozen=True)
class ServiceAtRisk:
    """A business service the change can reach, and its criticality (1 = most critical)."""

    id: str
    criticality: int


@dataclass(frozen=True)
class RiskInputs:
    """Everything the score reads, as recorded with the assessment."""

    cis_reached: int
    services: tuple[ServiceAtRisk, ...] = ()
    earlier_implemented: int = 0
    earlier_failed: int = 0
    # None: unknown (no schedule to ask), which adds nothing and says so.
    inside_maintenance_window: bool | None = None
    # None: no planned start, which counts as starting now.
    lead_time_hours: float | None = None
    backout_tested: bool = False
    # None: unknown (no projection of incidents to ask), which adds nothing and says so.
    open_major_incidents: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The inputs as stored (JSON-ready)."""
        return {
            "cis_reached": self.cis_reached,
            "services": [{"id": s.id, "criticality": s.criticality} for s in self.services],
            "earlier_implemented": self.earlier_implemented,
            "earlier_failed": self.earlier_failed,
            "inside_maintenance_window": self.inside_maintenance_window,
            "lead_time_hours": self.lead_time_hours,
            "backout_tested": self.backout_tested,
            "open_major_incidents": self.open_major_incidents,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RiskInputs:
        """The inputs as stored, read back."""
        majors = value["open_major_incidents"]
        return cls(
            cis_reached=int(value["cis_reached"]),
            services=tuple(
                ServiceAtRisk(str(s["id"]), int(s["criticality"])) for s in value["services"]
            ),
            earlier_implemented=int(value["earlier_implemented"]),
            earlier_failed=int(value["earlier_failed"]),
            inside_maintenance_window=value["inside_maintenance_window"],
            lead_time_hours=value["lead_time_hours"],
            backout_tested=bool(value["backout_tested"]),
            open_major_incidents=None if majors is None else int(majors),
        )


@dataclass(frozen=True)
class Factor:
    """One factor of the score: what it read, what it added, and why in words."""

    name: str
    input: Any
    contribution: float
    explanation: str

    def as_json(self) -> dict[str, Any]:
        """The factor as stored and shown."""
        return {
            "name": self.name,
            "input": self.input,
            "contribution": self.contribution,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Score:
    """The result of `score`: the total, the level it reaches, and each factor."""

    score: float
    level: str
    factors: tuple[Factor, ...] = field(default=())


def _points(value: float) -> float:
    return round(value, 2)


def _blast_radius(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    weight = sum(
        LEAST_CRITICAL + 1 - max(1, min(s.criticality, LEAST_CRITICAL)) for s in inputs.services
    )
    raw = weights.per_ci * inputs.cis_reached + weights.per_service_criticality * weight
    points = _points(min(weights.blast_radius_cap, raw))
    return Factor(
        "blast_radius",
        {
            "cis_reached": inputs.cis_reached,
            "services": [{"id": s.id, "criticality": s.criticality} for s in inputs.services],
        },
        points,
        f"{inputs.cis_reached} CIs reached and {len(inputs.services)} business services"
        f" (criticality weight {weight})" + (" (capped)" if raw > weights.blast_radius_cap else ""),
    )


def _failure_rate(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    done, failed = (
        inputs.earlier_implemented,
        min(inputs.earlier_failed, inputs.earlier_implemented),
    )
    if done == 0:
        return Factor(
            "failure_rate",
            {"implemented": 0, "failed": 0},
            0.0,
            "no earlier change on these CIs or this template was implemented",
        )
    rate = failed / done
    return Factor(
        "failure_rate",
        {"implemented": done, "failed": failed, "rate": _points(rate)},
        _points(weights.failure_rate * rate),
        f"{failed} of {done} earlier changes on these CIs or this template failed or were"
        " rolled back",
    )


def _maintenance_window(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    inside = inputs.inside_maintenance_window
    if inside is None:
        return Factor(
            "maintenance_window",
            None,
            0.0,
            "unknown: no maintenance-window schedule was available, so it adds nothing",
        )
    if inside:
        return Factor("maintenance_window", True, 0.0, "the window is inside a maintenance window")
    return Factor(
        "maintenance_window",
        False,
        _points(weights.outside_maintenance_window),
        "the window is outside every maintenance window of the affected CIs",
    )


def _lead_time(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    hours = inputs.lead_time_hours
    target = weights.lead_time_target_hours
    if hours is None:
        return Factor(
            "lead_time", None, _points(weights.short_lead_time), "no planned start: counted as now"
        )
    shortfall = max(0.0, min(1.0, 1.0 - max(hours, 0.0) / target))
    return Factor(
        "lead_time",
        hours,
        _points(weights.short_lead_time * shortfall),
        f"starts {hours:g} hours ahead (no points from {target:g} hours)",
    )


def _backout(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    if inputs.backout_tested:
        return Factor("backout_tested", True, 0.0, "the backout plan was tested")
    return Factor(
        "backout_tested", False, _points(weights.backout_untested), "the backout plan is untested"
    )


def _major_incidents(inputs: RiskInputs, weights: RiskWeights) -> Factor:
    count = inputs.open_major_incidents
    if count is None:
        return Factor(
            "major_incidents",
            None,
            0.0,
            "unknown: no projection of open major incidents was available, so it adds nothing",
        )
    raw = weights.per_major_incident * count
    return Factor(
        "major_incidents",
        count,
        _points(min(weights.major_incidents_cap, raw)),
        f"{count} open major incidents on the affected services",
    )


def level_of(score: float, thresholds: RiskThresholds) -> str:
    """The level a score reaches under the thresholds."""
    if score >= thresholds.high:
        return "high"
    if score >= thresholds.medium:
        return "medium"
    return "low"


def score(inputs: RiskInputs, rules: RiskRules) -> Score:
    """The score, level and factors of these inputs under these rules (pure, deterministic)."""
    weights = rules.weights
    factors = (
        _blast_radius(inputs, weights),
        _failure_rate(inputs, weights),
        _maintenance_window(inputs, weights),
        _lead_time(inputs, weights),
        _backout(inputs, weights),
        _major_incidents(inputs, weights),
    )
    total = _points(sum(f.contribution for f in factors))
    return Score(total, level_of(total, rules.thresholds), factors)


def overridden_level(computed: Score, level: str | None, reason: str | None) -> str:
    """The level in force: the computed one, or a person's override, which needs a reason
    (422 naming `reason`)."""
    if level is None:
        return computed.level
    if level not in RISK_LEVELS:
        raise invalid_field("level", f"must be one of {', '.join(RISK_LEVELS)}")
    if reason is None or not reason.strip():
        raise invalid_field("reason", "overriding the computed level needs a reason")
    return level


def factors_json(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    """The factors as stored and shown."""
    return [f.as_json() for f in factors]
