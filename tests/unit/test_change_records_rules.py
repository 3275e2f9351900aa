"""The change records' rules on an in-memory unit of work: the outcome proposal, when a PIR is
required, raising (CIs, services, incidents, templates), and the moves the use cases refuse."""

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from services.change.application import changes
from services.change.application.changes import NewChange
from services.change.domain.records import (
    ChangeSettings,
    Evidence,
    Template,
    propose_outcome,
    review_reasons,
)
from shared.errors import Conflict, ValidationFailed
from shared.events.catalogue import ChangeTransitionedV1
from tests.unit.fakes_change_rfc import NOW, FakeChangeUnitOfWork, a_ci


def fields_of(error: Exception) -> set[str]:
    assert isinstance(error, Conflict | ValidationFailed)
    return {f.field for f in error.fields}


@pytest.mark.parametrize(
    ("evidence", "outcome"),
    [
        (Evidence(), "successful"),
        (Evidence(suspected_incidents=(uuid.uuid4(),)), "successful_with_issues"),
        (Evidence(failed_deployments=("d1",), suspected_incidents=(uuid.uuid4(),)), "failed"),
        (Evidence(backout_executed=True, failed_deployments=("d1",)), "rolled_back"),
    ],
    ids=["nothing", "suspected", "failed-deployment", "backout"],
)
def test_the_proposed_outcome_is_the_worst_the_evidence_shows(evidence, outcome):
    proposal = propose_outcome(evidence)
    assert proposal.outcome == outcome
    assert proposal.reasons


def test_a_pir_is_required_for_failures_emergencies_and_the_tenants_risk_levels():
    settings = ChangeSettings(review_outcomes=(), review_risk_levels=("high",))
    assert (
        review_reasons(
            change_type="normal", outcome="successful", risk_level="low", settings=settings
        )
        == []
    )
    assert review_reasons(
        change_type="normal", outcome="failed", risk_level=None, settings=settings
    ) == ["its outcome is failed"]
    assert (
        len(
            review_reasons(
                change_type="emergency", outcome="rolled_back", risk_level="high", settings=settings
            )
        )
        == 3
    )
    with_issues = ChangeSettings(review_outcomes=("successful_with_issues",))
    assert review_reasons(
        change_type="normal",
        outcome="successful_with_issues",
        risk_level=None,
        settings=with_issues,
    )


async def raised(uow: FakeChangeUnitOfWork, **fields: Any):
    async with uow:
        return await changes.raise_change_in(
            uow, NewChange(**{"type": "normal", "title": "Patch", **fields}), now=NOW
        )


async def test_raising_derives_services_and_names_every_unknown_or_retired_ci():
    uow = FakeChangeUnitOfWork()
    web = uow.projection.add_ci(a_ci(), ["web", "shop"])
    db = uow.projection.add_ci(a_ci("database"), ["shop"])
    retired = uow.projection.add_ci(a_ci(status="retired"))

    change = await raised(uow, affected_cis=(web, db))
    assert change.business_services == ("shop", "web")

    with pytest.raises(ValidationFailed) as refused:
        await raised(FakeChangeUnitOfWork(), affected_cis=(uuid.uuid4(),))
    uow2 = FakeChangeUnitOfWork()
    uow2.projection = uow.projection
    with pytest.raises(ValidationFailed) as both:
        await raised(uow2, affected_cis=(web, uuid.uuid4(), retired))
    assert fields_of(refused.value) == {"affected_ci_ids[0]"}
    assert fields_of(both.value) == {"affected_ci_ids[1]", "affected_ci_ids[2]"}


async def test_an_emergency_change_needs_an_incident_the_projection_knows():
    uow = FakeChangeUnitOfWork()
    incident = uuid.uuid4()
    with pytest.raises(ValidationFailed) as unknown:
        await raised(uow, type="emergency", incidents=(incident,))
    assert fields_of(unknown.value) == {"incident_ids"}
    assert uow.written == []

    uow.projection.incidents.add(incident)
    change = await raised(uow, type="emergency", incidents=(incident,))
    assert change.incidents == (incident,)


async def test_a_standard_change_is_raised_from_an_active_template_and_scheduled_at_once():
    uow = FakeChangeUnitOfWork()
    server = uow.projection.add_ci(a_ci("server"))
    template = Template(
        id=uuid.uuid4(),
        name="Restart",
        description="",
        implementation_plan="restart",
        backout_plan="none",
        test_plan="",
        ci_classes=("server",),
    )
    uow.templates.rows[template.id] = template

    change = await raised(uow, type="standard", template_id=template.id, affected_cis=(server,))

    assert (change.state, change.version, change.risk_level) == ("scheduled", 2, "low")
    assert [type(e.payload).__name__ for e in uow.written] == [
        "ChangeCreatedV1",
        "ChangeTransitionedV1",
    ]
    uow.templates.rows[template.id] = replace(template, active=False)
    with pytest.raises(ValidationFailed) as inactive:
        await raised(uow, type="standard", template_id=template.id)
    assert fields_of(inactive.value) == {"template_id"}


async def at(uow: FakeChangeUnitOfWork, change, state: str, **values: Any):
    """The change put in a state directly (as earlier moves and the approvals would)."""
    current = replace(await uow.changes.locked(change.id, None), state=state, **values)
    uow.changes.rows[change.id] = current
    return current


async def test_scheduling_by_hand_is_refused_naming_to():
    uow = FakeChangeUnitOfWork()
    change = await at(uow, await raised(uow), "authorize")
    with pytest.raises(Conflict) as refused:
        async with uow:
            await changes.transition_change_in(
                uow, change.id, "scheduled", expected_version=None, now=NOW
            )
    assert fields_of(refused.value) == {"to"}
    assert "approvals" in refused.value.detail


async def test_an_outcome_against_the_proposal_needs_a_reason_which_the_event_records():
    uow = FakeChangeUnitOfWork()
    change = await at(uow, await raised(uow), "implement", actual_start=NOW)
    uow.evidence.backouts[change.id] = changes.Backout(change.id, "slow", "carol", NOW)

    with pytest.raises(ValidationFailed) as silent:
        async with uow:
            await changes.transition_change_in(
                uow, change.id, "review", expected_version=None, outcome="successful", now=NOW
            )
    assert fields_of(silent.value) == {"outcome_reason"}

    async with uow:
        moved = await changes.transition_change_in(
            uow,
            change.id,
            "review",
            expected_version=None,
            outcome="successful",
            outcome_reason="the backout was a drill",
            now=NOW,
        )
    assert moved.outcome == "successful"
    [event] = [e.payload for e in uow.written if isinstance(e.payload, ChangeTransitionedV1)]
    assert (event.proposed_outcome, event.outcome_reason) == (
        "rolled_back",
        "the backout was a drill",
    )


async def test_an_emergency_change_is_due_for_review_and_not_closed_without_one():
    uow = FakeChangeUnitOfWork()
    uow.change_settings.settings = ChangeSettings(emergency_review_days=2, version=1)
    incident = uuid.uuid4()
    uow.projection.incidents.add(incident)
    change = await raised(uow, type="emergency", incidents=(incident,))
    change = await at(uow, change, "implement", actual_start=NOW)
    end = NOW + timedelta(hours=1)
    async with uow:
        change = await changes.transition_change_in(
            uow, change.id, "review", expected_version=None, outcome="successful", now=end
        )
    assert change.review_due_at == end + timedelta(days=2)

    with pytest.raises(Conflict) as refused:
        async with uow:
            await changes.transition_change_in(
                uow, change.id, "closed", expected_version=None, now=end
            )
    assert fields_of(refused.value) == {"review"}

    async with uow:
        change = await changes.review_in(
            uow,
            change.id,
            what_happened="hotfix held",
            lessons="",
            actions=("add a test",),
            expected_version=change.version,
            now=end,
        )
        closed = await changes.transition_change_in(
            uow, change.id, "closed", expected_version=change.version, now=end
        )
    assert closed.state == "closed"


async def test_a_failed_deployment_of_the_change_proposes_failed_naming_it():
    uow = FakeChangeUnitOfWork()
    change = await at(uow, await raised(uow), "implement", actual_start=NOW)
    uow.evidence.failed.append((change.id, "payroll-deploy/production#41"))

    async with uow:
        view = await changes.outcome_proposal_in(uow, change, now=NOW)
    assert view.proposal.outcome == "failed"
    assert "payroll-deploy/production#41" in view.proposal.reasons[0]
    assert view.evidence.failed_deployments == ("payroll-deploy/production#41",)
