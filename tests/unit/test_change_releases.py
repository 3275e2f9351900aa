"""Releases: the state machine, promotion by digest, rollbacks and evidence (pure)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.change.domain.releases import (
    RELEASE,
    EnvironmentDeployment,
    add_evidence,
    check_promotion,
    plan_release,
    record_deployment,
    transition,
)
from shared.errors import Conflict, InvalidTransition, ValidationFailed

NOW = datetime(2026, 12, 3, tzinfo=UTC)
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
ORDER = ("test", "staging", "production")


def a_release(state="deploying", artifacts=({"name": "api", "version": "2", "digest": A},)):
    release, events = plan_release(
        tenant_id="t",
        number=3,
        name="R2",
        environments=ORDER,
        changes=[uuid.uuid4()],
        artifacts=artifacts,
        actor="mia",
        now=NOW,
    )
    assert release.reference == "REL3" and release.state == "planned"
    assert events[0].artifacts[0].digest == artifacts[0]["digest"]
    return replace(release, state=state)


def test_a_release_goes_from_planned_to_closed_through_each_state():
    release = a_release("planned")
    for state in ("building", "testing", "deploying", "deployed", "closed"):
        moved = transition(release, state, actor="mia", now=NOW)
        assert moved.events[0].from_state == release.state
        release = moved.record
    assert release.state == "closed" and release.version == 6
    assert RELEASE.final_states == ("closed", "cancelled")


def test_an_illegal_move_is_refused_naming_the_allowed_ones():
    with pytest.raises(InvalidTransition) as refused:
        transition(a_release("planned"), "deployed", actor="mia", now=NOW)
    assert refused.value.allowed == ("building", "cancelled")


@pytest.mark.parametrize("state", ["failed", "rolled_back"])
def test_failing_or_rolling_back_needs_a_reason(state):
    with pytest.raises(ValidationFailed) as refused:
        transition(a_release("deploying"), state, actor="mia", now=NOW)
    assert [f.field for f in refused.value.fields] == ["reason"]
    moved = transition(a_release("deploying"), state, actor="mia", now=NOW, reason="smoke test")
    assert moved.record.reason == "smoke test"


def test_the_first_environment_takes_the_releases_own_digest_only():
    check_promotion(a_release(), "test", {"api": A}, [])
    with pytest.raises(Conflict):
        check_promotion(a_release(), "test", {"api": B}, [])
    with pytest.raises(ValidationFailed) as unknown:
        check_promotion(a_release(), "test", {"web": A}, [])
    assert unknown.value.fields[0].field == "digests.web"
    with pytest.raises(ValidationFailed) as elsewhere:
        check_promotion(a_release(), "qa", {"api": A}, [])
    assert elsewhere.value.fields[0].field == "environment"


def test_promotion_needs_the_digest_to_have_succeeded_in_the_environment_before():
    release = a_release()
    with pytest.raises(Conflict) as refused:
        check_promotion(release, "staging", {"api": A}, [])
    assert refused.value.extensions == {
        "artifact": "api",
        "environment": "staging",
        "previous": "test",
    }
    tested = [EnvironmentDeployment("test", "succeeded", {"api": A})]
    check_promotion(release, "staging", {"api": A}, tested)
    # Skipping an environment is no promotion: production needs staging, not test.
    with pytest.raises(Conflict):
        check_promotion(release, "production", {"api": A}, tested)
    failed = [EnvironmentDeployment("test", "failed", {"api": A})]
    with pytest.raises(Conflict):
        check_promotion(release, "staging", {"api": A}, failed)


def test_a_rollback_in_the_environment_before_withdraws_its_success():
    release = a_release()
    history = [
        EnvironmentDeployment("test", "succeeded", {"api": A}),
        EnvironmentDeployment("test", "rolled_back", {"api": A}),
    ]
    with pytest.raises(Conflict):
        check_promotion(release, "staging", {"api": A}, history)


def test_a_deployment_is_a_version_with_its_event_and_a_rollback_is_recorded_as_is():
    release = a_release()
    tested = [EnvironmentDeployment("test", "succeeded", {"api": A})]
    done = record_deployment(
        release,
        environment="staging",
        status="succeeded",
        digests={"api": A},
        evidence=["https://ci.example/1", "sha256:" + "c" * 64],
        log_url=None,
        deployment_id=None,
        history=tested,
        actor="mia",
        now=NOW,
    )
    assert done.record.version == release.version + 1
    assert done.events[0].environment == "staging" and done.events[0].digests == {"api": A}
    back = record_deployment(
        release,
        environment="production",
        status="rolled_back",
        digests={"api": B},
        evidence=[],
        log_url=None,
        deployment_id=None,
        history=[],
        actor="mia",
        now=NOW,
    )
    assert back.events[0].status == "rolled_back"


def test_deployments_are_not_recorded_on_a_planned_or_closed_release():
    for state in ("planned", "closed", "cancelled"):
        with pytest.raises(Conflict):
            record_deployment(
                a_release(state),
                environment="test",
                status="succeeded",
                digests={"api": A},
                evidence=[],
                log_url=None,
                deployment_id=None,
                history=[],
                actor="mia",
                now=NOW,
            )


def test_evidence_is_a_link_or_a_hash():
    added = add_evidence(
        a_release(), kind="test", ref="https://ci.example/r", environment="test", actor="m", now=NOW
    )
    assert added.record.evidence[0]["kind"] == "test"
    with pytest.raises(ValidationFailed):
        add_evidence(a_release(), kind="test", ref="ftp://x", environment=None, actor="m", now=NOW)


def test_a_release_refuses_bad_digests_and_twice_named_artifacts_or_environments():
    with pytest.raises(ValidationFailed) as refused:
        a_release(artifacts=({"name": "api", "version": "1", "digest": "sha1:00"},))
    assert refused.value.fields[0].field == "artifacts[0].digest"
    twice = {"name": "api", "version": "1", "digest": A}
    with pytest.raises(ValidationFailed):
        a_release(artifacts=(twice, twice))
    with pytest.raises(ValidationFailed):
        plan_release(
            tenant_id="t",
            number=1,
            name="x",
            environments=["test", "test"],
            changes=[],
            artifacts=[twice],
            actor="m",
            now=NOW,
        )
