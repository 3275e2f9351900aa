"""The incident use cases on a fake unit of work: the events they record, what they store, and
the typed error of each refusal (no PostgreSQL)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from services.incident.adapters.changes import ImplementedChange
from services.incident.adapters.settings import TenantSettings
from services.incident.application import handlers, housekeeping
from services.incident.application.alerts import apply_alert
from services.incident.application.correlation import change_implemented, ci_written
from services.incident.application.handlers import LogIncident
from services.incident.application.tenant_settings import (
    IncidentSettingsBody,
    replace_settings_in,
)
from services.incident.domain import workflow
from services.incident.domain.alerts import AlertIntent, CiRef
from shared.errors import Conflict, NotFound, StaleVersion, ValidationFailed
from shared.events.catalogue import (
    ChangeImplementedV1,
    ChangeSuspectedV1,
    CiStateV1,
    CiUpdatedV1,
    IncidentCreatedV1,
    IncidentSettingsChangedV1,
    SlaClockStoppedV1,
)
from tests.unit.fakes_incident import (
    NOW,
    FakeIncidentUnitOfWork,
    a_ci,
    context,
    gold_policy,
    new_metrics,
)

S = timedelta(seconds=1)


async def logged(uow: FakeIncidentUnitOfWork, command: LogIncident | None = None, at=NOW):
    async with uow:
        return await handlers.log_incident_in(
            uow, command or LogIncident("Mail down", "", 2, 2), now=at
        )


# --- logging ------------------------------------------------------------------------------------


async def test_logging_an_incident_stores_it_and_records_its_created_event_at_version_1() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    assert uow.incident_rows.rows[incident.id] == incident
    assert (incident.number, incident.version, incident.state) == (1, 1, "new")
    assert uow.events() == [("IncidentCreatedV1", 1)]
    assert uow.incident_rows.history_rows == [(incident.id, 1, "created", {})]


async def test_a_new_incident_with_a_policy_gets_both_clocks_from_the_reaction() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    incident = await logged(uow)
    clocks = uow.clock_rows.of("incident", incident.id)
    assert sorted(clocks) == ["resolution", "response"]
    assert {c.policy for c in clocks.values()} == {"gold"}
    assert clocks["response"].clock.started_at == NOW
    assert clocks["response"].correlation_id == "corr-1"
    assert incident.sla_policy == "gold"


async def test_a_new_incident_without_a_policy_has_no_clocks() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    assert uow.clock_rows.of("incident", incident.id) == {}


async def test_a_new_incident_on_a_ci_with_a_known_error_carries_its_workaround() -> None:
    from tests.unit.test_problem_use_cases import published_known_error

    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    problem = await published_known_error(uow, ci_id=uuid.UUID(ci.id))
    incident = await logged(uow, LogIncident("Mail down", "", 2, 2, ci_id=uuid.UUID(ci.id)))
    assert (incident.workaround, incident.known_error_id) == ("restart it", problem.id)
    (created,) = uow.payloads(IncidentCreatedV1)
    assert created.known_error_id == str(problem.id)


async def test_a_new_incident_on_a_recently_changed_ci_suspects_the_change() -> None:
    uow = FakeIncidentUnitOfWork(metrics=(metrics := new_metrics()))
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    change = ImplementedChange("CHG-1", uuid.UUID(ci.id), NOW - 60 * S)
    await uow.change_rows.record(change, "patch", "successful", NOW)
    incident = await logged(uow, LogIncident("Mail down", "", 2, 2, ci_id=uuid.UUID(ci.id)))
    assert incident.suspected_change == "CHG-1"
    assert uow.events(incident.id) == [("IncidentCreatedV1", 1), ("ChangeSuspectedV1", 1)]
    assert uow.change_rows.locks == [(uuid.UUID(ci.id), True)]
    assert metrics.change_correlations._value.get() == 1


async def test_an_unknown_ci_or_parent_is_refused_naming_the_field_and_nothing_is_written() -> None:
    uow = FakeIncidentUnitOfWork()
    with pytest.raises(ValidationFailed) as unknown_ci:
        await logged(uow, LogIncident("x", "", 2, 2, ci_id=uuid.uuid4()))
    with pytest.raises(ValidationFailed) as unknown_parent:
        await logged(uow, LogIncident("x", "", 2, 2, parent_id=uuid.uuid4()))
    assert [f.field for f in unknown_ci.value.fields] == ["ci_id"]
    assert [f.field for f in unknown_parent.value.fields] == ["parent_id"]
    assert uow.written == [] and uow.incident_rows.rows == {}
    assert uow.rolled_back == 2


# --- updating -------------------------------------------------------------------------------


async def test_a_new_priority_retargets_the_clocks_keeping_the_elapsed_time() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    incident = await logged(uow, LogIncident("Mail down", "", 3, 3))
    async with uow:
        updated = await handlers.update_incident_in(
            uow, incident.id, {"impact": 1, "urgency": 2}, expected_version=1, now=NOW + 30 * S
        )
    assert (updated.priority, updated.version) == (2, 2)
    assert uow.events(incident.id)[-1] == ("IncidentUpdatedV1", 2)
    clocks = uow.clock_rows.of("incident", incident.id)
    assert clocks["response"].priority == 2
    assert clocks["response"].clock.target_seconds == 120
    assert clocks["response"].clock.elapsed_seconds == 30


async def test_an_update_that_changes_nothing_records_nothing() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    async with uow:
        same = await handlers.update_incident_in(
            uow, incident.id, {"title": "Mail down"}, expected_version=None
        )
    assert same == incident and uow.events() == [("IncidentCreatedV1", 1)]


async def test_an_update_on_a_stale_version_or_a_missing_incident_is_refused() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    with pytest.raises(StaleVersion) as stale:
        async with uow:
            await handlers.update_incident_in(uow, incident.id, {"title": "y"}, expected_version=7)
    assert (stale.value.current, stale.value.expected) == (1, 7)
    with pytest.raises(NotFound):
        async with uow:
            await handlers.update_incident_in(uow, uuid.uuid4(), {}, expected_version=None)
    with pytest.raises(ValidationFailed) as unknown_ci:
        async with uow:
            await handlers.update_incident_in(
                uow, incident.id, {"ci_id": uuid.uuid4()}, expected_version=1
            )
    assert [f.field for f in unknown_ci.value.fields] == ["ci_id"]
    assert uow.events() == [("IncidentCreatedV1", 1)]


# --- moving ---------------------------------------------------------------------------------


async def test_resolving_stops_both_clocks_after_the_move_and_queues_the_auto_close() -> None:
    uow = FakeIncidentUnitOfWork(settings=TenantSettings(auto_close_days=3))
    uow.projected.policy = gold_policy()
    incident = await logged(uow)
    async with uow:
        locked = await handlers.locked_incident(uow, incident.id, 1)
        resolved = await handlers.move_incident(
            uow,
            locked,
            "resolved",
            now=NOW + 10 * S,
            resolution_code="solved_workaround",
            resolution_notes="restarted",
        )
    assert resolved.state == "resolved"
    assert [t for t, _ in uow.events()][1:] == [
        "IncidentTransitionedV1",
        "SlaClockStoppedV1",
        "SlaClockStoppedV1",
    ]
    stops = uow.payloads(SlaClockStoppedV1)
    assert [(s.clock.kind, s.result) for s in stops] == [("response", "met"), ("resolution", "met")]
    assert [e.version for e in uow.written if isinstance(e.payload, SlaClockStoppedV1)] == [1, 1]
    assert uow.incident_rows.auto_close == {incident.id: NOW + 10 * S + timedelta(days=3)}


async def test_an_illegal_move_is_refused_by_the_workflow_and_records_nothing() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    with pytest.raises(workflow.IllegalTransition):
        async with uow:
            await handlers.move_incident(uow, incident, "closed")
    assert uow.events() == [("IncidentCreatedV1", 1)]


async def test_a_work_note_is_recorded_at_the_incidents_version() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await logged(uow)
    async with uow:
        locked = await handlers.locked_incident(uow, incident.id, None)
        await handlers.note_incident(uow, locked, "called the vendor")
    assert uow.events(incident.id)[-1] == ("WorkNoteAddedV1", 1)
    assert uow.incident_rows.notes == [(incident.id, "alice", "called the vendor")]


async def test_a_major_review_is_recorded_and_refused_for_an_incident_that_is_not_major() -> None:
    uow = FakeIncidentUnitOfWork()
    minor = await logged(uow, LogIncident("Typo", "", 3, 3))
    major = await logged(uow, LogIncident("Outage", "", 1, 1))
    with pytest.raises(Conflict) as refused:
        async with uow:
            await handlers.record_major_review_in(uow, minor.id, "s", "l", expected_version=1)
    assert [(f.field, f.location) for f in refused.value.fields] == [("incident_id", "path")]
    async with uow:
        reviewed = await handlers.record_major_review_in(
            uow, major.id, "root cause found", "monitor disks", expected_version=1
        )
    assert reviewed.major_review is not None and reviewed.version == 2
    assert uow.events(major.id)[-1] == ("MajorReviewRecordedV1", 2)


# --- auto-close -----------------------------------------------------------------------------


async def resolved_incident(uow: FakeIncidentUnitOfWork, impact: int = 2):
    incident = await logged(uow, LogIncident("Mail down", "", impact, impact))
    async with uow:
        return await handlers.move_incident(
            uow,
            incident,
            "resolved",
            now=NOW,
            resolution_code="solved_workaround",
            resolution_notes="restarted",
        )


async def test_auto_close_closes_a_resolved_incident_whose_time_has_come() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await resolved_incident(uow)
    async with uow:
        closed = await housekeeping.close_one(uow, incident.id, 7, NOW + timedelta(days=8))
    assert closed == 1
    assert uow.incident_rows.rows[incident.id].state == "closed"
    assert uow.events(incident.id)[-1] == ("IncidentTransitionedV1", 3)
    assert uow.incident_rows.auto_close == {}


async def test_auto_close_requeues_an_incident_not_yet_due_and_drops_a_reopened_one() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await resolved_incident(uow)
    async with uow:
        assert await housekeeping.close_one(uow, incident.id, 7, NOW + timedelta(days=2)) == 0
    assert uow.incident_rows.auto_close == {incident.id: NOW + timedelta(days=7)}
    async with uow:
        assert await housekeeping.close_one(uow, uuid.uuid4(), 7, NOW) == 0
    assert uow.events(incident.id)[-1] == ("IncidentTransitionedV1", 2)


async def test_auto_close_refuses_a_major_incident_without_its_review() -> None:
    uow = FakeIncidentUnitOfWork()
    incident = await resolved_incident(uow, impact=1)
    with pytest.raises(workflow.MajorReviewMissing):
        async with uow:
            await housekeeping.close_one(uow, incident.id, 7, NOW + timedelta(days=8))
    assert uow.incident_rows.rows[incident.id].state == "resolved"


# --- change correlation -------------------------------------------------------------------------


def implemented(ci_id: str, at=NOW) -> ChangeImplementedV1:
    return ChangeImplementedV1(
        change_id="CHG-7", ci_ids=[ci_id], implemented_at=at, title="patch", outcome="successful"
    )


async def test_a_change_implemented_before_an_incident_on_its_ci_flags_it_once() -> None:
    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    incident = await logged(
        uow, LogIncident("Mail down", "", 2, 2, ci_id=uuid.UUID(ci.id)), at=NOW + 60 * S
    )
    async with uow:
        assert await change_implemented(uow, implemented(ci.id), now=NOW + 120 * S) == 1
    async with uow:  # announced again: recorded once, flags nothing
        assert await change_implemented(uow, implemented(ci.id), now=NOW + 180 * S) == 0
    assert uow.events(incident.id) == [
        ("IncidentCreatedV1", 1),
        ("IncidentUpdatedV1", 2),
        ("ChangeSuspectedV1", 2),
    ]
    assert uow.incident_rows.rows[incident.id].suspected_change == "CHG-7"
    assert [p.change_id for p in uow.payloads(ChangeSuspectedV1)] == ["CHG-7"]


def written(ci_id: str, at=NOW, change_id: str | None = "CHG-7") -> CiUpdatedV1:
    """The config service's CI update, made under a change's id (while it is implemented)."""
    state = CiStateV1(
        id=ci_id,
        ci_class="database",
        name="db-1",
        status="active",
        owner_team=None,
        criticality=2,
        attributes={},
        external_ids={},
        controlled=True,
        version=2,
        updated_at=at,
        updated_by="ivan",
    )
    return CiUpdatedV1(ci=state, changed=["attributes"], change_id=change_id)


async def test_an_incident_after_a_ci_write_under_a_change_suspects_it_while_it_is_implemented():
    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    before = await logged(uow, LogIncident("Slow", "", 2, 2, ci_id=uuid.UUID(ci.id)))
    async with uow:  # nothing logged on the CI since the write: nothing to flag yet
        assert await ci_written(uow, written(ci.id, at=NOW + 60 * S), now=NOW + 61 * S) == 0
    after = await logged(
        uow, LogIncident("Down", "", 2, 2, ci_id=uuid.UUID(ci.id)), at=NOW + 120 * S
    )
    assert (before.suspected_change, after.suspected_change) == (None, "CHG-7")
    [suspicion] = uow.payloads(ChangeSuspectedV1)
    assert (suspicion.change_id, suspicion.implemented_at) == ("CHG-7", NOW + 60 * S)


async def test_a_ci_write_under_a_change_flags_the_incidents_logged_since_it_once() -> None:
    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    # The incident is logged before the write's event arrives (they travel on other topics).
    incident = await logged(
        uow, LogIncident("Down", "", 2, 2, ci_id=uuid.UUID(ci.id)), at=NOW + 120 * S
    )
    async with uow:
        assert await ci_written(uow, written(ci.id, at=NOW + 60 * S), now=NOW + 180 * S) == 1
    async with uow:  # a second write within the span known: nothing new
        assert await ci_written(uow, written(ci.id, at=NOW + 90 * S), now=NOW + 190 * S) == 0
    async with uow:  # the implementation's end: its window reaches no new incident
        assert await change_implemented(uow, implemented(ci.id, NOW + 150 * S)) == 0
    assert uow.incident_rows.rows[incident.id].suspected_change == "CHG-7"
    assert [p.change_id for p in uow.payloads(ChangeSuspectedV1)] == ["CHG-7"]
    async with uow:  # a CI written without a change records nothing
        assert await ci_written(uow, written(ci.id, change_id=None)) == 0
    assert list(uow.change_rows.recorded) == [("CHG-7", uuid.UUID(ci.id))]


async def test_a_change_spans_from_its_first_ci_write_to_the_window_after_its_end() -> None:
    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    window = timedelta(seconds=uow.settings.current.change_window_seconds)
    end = NOW + window  # a long implementation: ends a whole window after its first write
    async with uow:  # the end arrives first (other topic), then the write that began it
        assert await change_implemented(uow, implemented(ci.id, end)) == 0
    during = await logged(
        uow, LogIncident("Slow", "", 2, 2, ci_id=uuid.UUID(ci.id)), at=NOW + 60 * S
    )
    assert during.suspected_change is None  # the change is not known on the CI then yet
    async with uow:
        assert await ci_written(uow, written(ci.id, at=NOW), now=end + S) == 1
    late = await logged(
        uow, LogIncident("Down", "", 2, 2, ci_id=uuid.UUID(ci.id)), at=end + window - S
    )
    assert uow.incident_rows.rows[during.id].suspected_change == "CHG-7"
    assert late.suspected_change == "CHG-7"
    assert uow.change_rows.recorded[("CHG-7", uuid.UUID(ci.id))].since == NOW
    assert len(uow.payloads(ChangeSuspectedV1)) == 2


async def test_a_change_naming_a_ci_that_is_not_a_uuid_is_refused() -> None:
    uow = FakeIncidentUnitOfWork()
    with pytest.raises(ValueError, match="ci_ids must be CI ids"):
        async with uow:
            await change_implemented(uow, implemented("not-a-uuid"))
    assert uow.written == []


# --- tenant settings ----------------------------------------------------------------------------


async def test_replacing_the_settings_stores_them_and_announces_the_new_version() -> None:
    uow = FakeIncidentUnitOfWork()
    async with uow:
        stored = await replace_settings_in(
            uow, IncidentSettingsBody(auto_close_days=3), expected_version=0
        )
    assert (stored.version, stored.auto_close_days) == (1, 3)
    assert uow.settings_row.locked
    assert [(e.subject, e.version) for e in uow.written] == [("settings", 1)]
    (event,) = uow.payloads(IncidentSettingsChangedV1)
    assert event.settings["auto_close_days"] == 3 and "version" not in event.settings


async def test_replacing_settings_read_at_an_older_version_is_refused() -> None:
    uow = FakeIncidentUnitOfWork(settings=replace(TenantSettings(), version=4))
    with pytest.raises(StaleVersion) as stale:
        async with uow:
            await replace_settings_in(uow, IncidentSettingsBody(), expected_version=3)
    assert (stale.value.current, stale.value.expected) == (4, 3)
    assert uow.written == [] and uow.settings_row.writes == []


# --- alert intake -------------------------------------------------------------------------------


def intent(action: str = "trigger", **changes: object) -> AlertIntent:
    base = AlertIntent(
        source="alertmanager",
        dedup_key="group-1",
        action=action,  # type: ignore[arg-type]
        title="DiskFull on db-1" if action == "trigger" else None,
        description="disk at 99%" if action == "trigger" else None,
        impact=2 if action == "trigger" else None,
        urgency=2 if action == "trigger" else None,
        ci_ref=CiRef("db-1", "name") if action == "trigger" else None,
        service_ref="payroll" if action == "trigger" else None,
        started_at=NOW,
        ended_at=None,
        alert_count=1,
        truncated_alerts=0,
        fingerprints=("f1",),
        auto_resolve=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def alert(uow: FakeIncidentUnitOfWork, what: AlertIntent, at=NOW):
    async with uow:
        return await apply_alert(uow, what, await uow.settings.get(), now=at)


async def test_a_first_trigger_opens_an_incident_on_the_named_ci_and_says_what_it_could_not_link():
    uow = FakeIncidentUnitOfWork(context("alertmanager"))
    ci = a_ci("db-1")
    uow.projected.cis[ci.id] = ci
    applied = await alert(uow, intent())
    assert applied.outcome == "opened" and applied.incident is not None
    opened = uow.incident_rows.rows[applied.incident.id]
    assert (opened.ci_id, opened.origin) == (uuid.UUID(ci.id), "alertmanager")
    assert opened.description.startswith("Not linked: the alerts name a business service")
    group = uow.alert_rows.groups["alertmanager", "group-1"]
    assert (group.incident_id, group.incidents_opened, group.last_outcome) == (
        opened.id,
        1,
        "opened",
    )
    assert uow.events() == [("IncidentCreatedV1", 1)]


async def test_a_repeated_trigger_goes_to_the_same_incident_and_changes_nothing_new():
    uow = FakeIncidentUnitOfWork(context("alertmanager"))
    first = await alert(uow, intent())
    again = await alert(uow, intent(), at=NOW + S)
    assert again.outcome == "unchanged" and again.incident == first.incident
    assert uow.alert_rows.groups["alertmanager", "group-1"].deduplicated == 1
    assert uow.events() == [("IncidentCreatedV1", 1)]


async def test_an_acknowledgement_starts_work_with_a_note_and_a_resolve_resolves():
    uow = FakeIncidentUnitOfWork(context("alertmanager"))
    uow.projected.policy = gold_policy()
    opened = await alert(uow, intent())
    assert opened.incident is not None
    acknowledged = await alert(uow, intent("acknowledge"), at=NOW + S)
    resolved = await alert(uow, intent("resolve"), at=NOW + 2 * S)
    assert (acknowledged.outcome, resolved.outcome) == ("acknowledged", "resolved")
    stored = uow.incident_rows.rows[opened.incident.id]
    assert (stored.state, stored.resolution_code) == ("resolved", "alert_cleared")
    assert [t for t, _ in uow.events(opened.incident.id)] == [
        "IncidentCreatedV1",
        "IncidentTransitionedV1",
        "WorkNoteAddedV1",
        "IncidentTransitionedV1",
        "WorkNoteAddedV1",
    ]
    assert stored.id in uow.incident_rows.auto_close


async def test_an_acknowledgement_of_an_unknown_group_is_ignored_and_leaves_no_group():
    uow = FakeIncidentUnitOfWork(context("alertmanager"))
    applied = await alert(uow, intent("acknowledge"))
    assert (applied.outcome, applied.incident) == ("ignored", None)
    assert uow.alert_rows.groups == {} and uow.written == []


async def test_a_hold_pauses_the_clocks_its_policy_pauses_on_and_a_reopen_runs_them_again():
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    incident = await logged(uow)

    async def move(to: str, at, **details):
        async with uow:
            current = await handlers.locked_incident(uow, incident.id, None)
            return await handlers.move_incident(uow, current, to, now=at, **details)

    def states():
        return {k: c.clock.state for k, c in uow.clock_rows.of("incident", incident.id).items()}

    await move("on_hold", NOW + 10 * S, hold_reason="awaiting_customer")
    assert states() == {"response": "stopped", "resolution": "paused"}
    await move("in_progress", NOW + 70 * S)
    assert states() == {"response": "stopped", "resolution": "running"}
    await move(
        "resolved",
        NOW + 80 * S,
        resolution_code="solved_workaround",
        resolution_notes="restarted",
    )
    assert states() == {"response": "stopped", "resolution": "stopped"}
    reopened = await move("in_progress", NOW + 90 * S)
    assert states() == {"response": "stopped", "resolution": "running"}
    resolution = uow.clock_rows.of("incident", incident.id)["resolution"].clock
    assert resolution.paused_seconds == 60  # the hold did not count
    assert incident.id not in uow.incident_rows.auto_close and reopened.version == 5
