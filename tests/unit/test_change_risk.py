"""A change's risk (domain, pure): explainable factors, levels from the tenant's thresholds, an
override that needs a reason, and a score that is deterministic and monotonic."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.change.domain.risk import (
    RiskInputs,
    RiskRules,
    RiskThresholds,
    ServiceAtRisk,
    overridden_level,
    score,
)
from shared.errors import ValidationFailed

RULES = RiskRules()


def _factors(inputs: RiskInputs, rules: RiskRules = RULES) -> dict[str, float]:
    return {f.name: f.contribution for f in score(inputs, rules).factors}


def test_every_factor_is_returned_with_its_input_contribution_and_explanation():
    inputs = RiskInputs(
        cis_reached=3,
        services=(ServiceAtRisk("payroll", 1),),
        earlier_implemented=4,
        earlier_failed=1,
        inside_maintenance_window=False,
        lead_time_hours=36.0,
        backout_tested=False,
        open_major_incidents=1,
    )
    result = score(inputs, RULES)
    by_name = {f.name: f for f in result.factors}
    assert set(by_name) == {
        "blast_radius",
        "failure_rate",
        "maintenance_window",
        "lead_time",
        "backout_tested",
        "major_incidents",
    }
    # 3 CIs x 1 + 1 service of criticality 1 -> (5 - 1) x 2
    assert by_name["blast_radius"].contribution == 11.0
    assert by_name["failure_rate"].contribution == 6.25
    assert by_name["failure_rate"].input == {"implemented": 4, "failed": 1, "rate": 0.25}
    assert by_name["maintenance_window"].contribution == 15.0
    assert by_name["lead_time"].contribution == 5.0
    assert by_name["backout_tested"].contribution == 10.0
    assert by_name["major_incidents"].contribution == 10.0
    assert result.score == 57.25
    assert result.level == "medium"
    assert all(f.explanation for f in result.factors)


def test_an_unknown_maintenance_window_or_incident_count_adds_nothing_and_says_so():
    factors = {f.name: f for f in score(RiskInputs(cis_reached=1), RULES).factors}
    assert factors["maintenance_window"].contribution == 0
    assert "unknown" in factors["maintenance_window"].explanation
    assert factors["major_incidents"].contribution == 0
    assert "unknown" in factors["major_incidents"].explanation


def test_the_levels_follow_the_tenants_thresholds():
    inputs = RiskInputs(cis_reached=20, lead_time_hours=1000.0, backout_tested=True)
    assert score(inputs, RULES).level == "low"
    strict = RiskRules(thresholds=RiskThresholds(medium=5, high=15))
    assert score(inputs, strict).level == "high"


def test_thresholds_out_of_order_are_refused():
    with pytest.raises(ValueError, match="high must not be below medium"):
        RiskThresholds(medium=50, high=10)


def test_overriding_the_level_without_a_reason_is_refused_naming_reason():
    computed = score(RiskInputs(cis_reached=1), RULES)
    with pytest.raises(ValidationFailed) as refused:
        overridden_level(computed, "high", "  ")
    assert [f.field for f in refused.value.fields] == ["reason"]
    assert overridden_level(computed, "high", "vendor advisory") == "high"
    assert overridden_level(computed, None, None) == computed.level


inputs_strategy = st.builds(
    RiskInputs,
    cis_reached=st.integers(0, 500),
    services=st.lists(
        st.builds(ServiceAtRisk, st.text(min_size=1, max_size=5), st.integers(1, 4)), max_size=5
    ).map(tuple),
    earlier_implemented=st.integers(0, 50),
    earlier_failed=st.integers(0, 50),
    inside_maintenance_window=st.one_of(st.none(), st.booleans()),
    lead_time_hours=st.one_of(st.none(), st.floats(-100, 10_000, allow_nan=False)),
    backout_tested=st.booleans(),
    open_major_incidents=st.one_of(st.none(), st.integers(0, 10)),
)


@given(inputs_strategy, st.integers(0, 200))
def test_more_blast_radius_never_lowers_the_score(inputs, more):
    wider = RiskInputs(**{**inputs.__dict__, "cis_reached": inputs.cis_reached + more})
    assert score(wider, RULES).score >= score(inputs, RULES).score
    critical = RiskInputs(
        **{**inputs.__dict__, "services": (*inputs.services, ServiceAtRisk("extra", 1))}
    )
    assert score(critical, RULES).score >= score(inputs, RULES).score


@given(inputs_strategy)
def test_the_score_is_deterministic_and_replays_from_its_stored_json(inputs):
    first = score(inputs, RULES)
    stored = json.loads(json.dumps(inputs.as_json()))
    rules = RiskRules.model_validate(json.loads(json.dumps(RULES.model_dump(mode="json"))))
    again = score(RiskInputs.from_json(stored), rules)
    assert again == first
