"""The KPI fold and computation (services/reporting/domain/kpis.py), without a database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain import kpis
from services.reporting.domain.clauses import LoggedEvent
from services.reporting.domain.report_data import Period, period_of

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Log:
    """Events of one tenant's log, in order, with times relative to T0 (minutes)."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []

    def add(
        self, type_: str, subject: str, minutes: float, data: dict, actor: str = "alice"
    ) -> None:
        self.events.append(
            LoggedEvent(
                leaf_index=len(self.events),
                event_id=str(uuid.uuid4()),
                type=type_,
                subject=subject,
                version=1,
                time=T0 + timedelta(minutes=minutes),
                actor=actor,
                data=data,
            )
        )

    def incident(self, minutes: float = 0, *, priority: int = 3, actor: str = "alice", **fields):
        incident_id = str(uuid.uuid4())
        data = {"priority": priority, "state": "new", "services": ["svc-a"], **fields}
        self.add("itsm.incident.created.v1", incident_id, minutes, data, actor)
        return incident_id

    def move(self, incident_id, before, after, minutes, actor="alice", priority=3):
        data = {"from_state": before, "to_state": after, "priority": priority}
        self.add("itsm.incident.transitioned.v1", incident_id, minutes, data, actor)

    def clock(self, record_id, kind, result, minutes, elapsed, priority=3, record="incident"):
        clock = {
            "record": record,
            "record_id": record_id,
            "kind": kind,
            "policy": "gold",
            "priority": priority,
            "target_seconds": 3600,
        }
        self.add(
            "itsm.incident.sla.clock_stopped.v1",
            f"sla/{record_id}/{kind}",
            minutes,
            {"clock": clock, "result": result, "elapsed_seconds": elapsed},
        )

    def facts(self) -> dict[kpis.Key, kpis.Fact]:
        return kpis.fold_all(self.events)

    def value(self, kpi, *, dimension="tenant", dim_value=None, kind="month", start=None):
        facts = self.facts().values()
        as_of = max(e.time.timestamp() for e in self.events)
        points = kpis.evaluate(
            facts,
            [kpi],
            kind,
            start or T0.date(),
            1,
            zone=UTC_ZONE,
            as_of=as_of,
            dimension=dimension,
        )
        [point] = [p for p in points if p.dimension_value == dim_value]
        return point.value, point.count


def test_times_to_acknowledge_and_resolve_are_from_logging_to_the_first_move_and_resolution():
    log = Log()
    first = log.incident(0)
    log.move(first, "new", "in_progress", 10)
    log.move(first, "in_progress", "resolved", 70)
    second = log.incident(5)
    log.move(second, "new", "in_progress", 35)
    log.move(second, "in_progress", "resolved", 125)
    assert log.value("incident.acknowledge_time.mean") == (20 * 60, 2)
    assert log.value("incident.resolve_time.mean") == (95 * 60, 2)
    assert log.value("incident.resolve_time.median") == (95 * 60, 2)
    assert log.value("incident.volume") == (2, 2)


def test_business_times_are_the_sla_clocks_elapsed_seconds():
    log = Log()
    incident = log.incident(0)
    log.clock(incident, "response", "met", 10, 120.0)
    log.clock(incident, "resolution", "breached", 600, 30000.0)
    assert log.value("incident.acknowledge_business_time.mean") == (120.0, 1)
    assert log.value("incident.resolve_business_time.median") == (30000.0, 1)
    assert log.value("incident.sla.response_compliance") == (1.0, 1)
    assert log.value("incident.sla.resolution_compliance") == (0.0, 1)


def test_sla_compliance_is_split_by_priority():
    log = Log()
    urgent = log.incident(0, priority=1)
    log.clock(urgent, "resolution", "breached", 60, 4000.0, priority=1)
    for minutes in (1, 2, 3):
        routine = log.incident(minutes, priority=4)
        log.clock(routine, "resolution", "met", 60 + minutes, 100.0, priority=4)
    log.clock(log.incident(4, priority=4), "resolution", "breached", 70, 9000.0, priority=4)
    compliance = "incident.sla.resolution_compliance"
    assert log.value(compliance, dimension="priority", dim_value="P1") == (0.0, 1)
    assert log.value(compliance, dimension="priority", dim_value="P4") == (0.75, 4)


def test_a_reopened_incident_counts_its_last_resolution_and_is_not_a_first_contact_resolution():
    log = Log()
    reopened = log.incident(0)
    log.move(reopened, "new", "resolved", 10)
    log.move(reopened, "resolved", "in_progress", 20)
    log.move(reopened, "in_progress", "resolved", 40)
    fixed = log.incident(1)
    log.move(fixed, "new", "resolved", 11)
    assert log.value("incident.reopen_rate") == (0.5, 2)
    assert log.value("incident.first_contact_resolution") == (0.5, 2)
    resolve = log.facts()[("incident", reopened)]
    assert resolve.resolved - resolve.opened == 40 * 60 and resolve.reopens == 1


def test_first_contact_resolution_needs_the_logger_to_resolve_it_without_reassignment():
    log = Log()
    by_someone_else = log.incident(0)
    log.move(by_someone_else, "new", "resolved", 5, actor="bob")
    reassigned = log.incident(0, assignment_group="desk")
    log.add(
        "itsm.incident.updated.v1",
        reassigned,
        2,
        {
            "changes": {"assignment_group": {"from": "desk", "to": "network"}},
            "priority": 3,
            "state": "new",
        },
    )
    log.move(reassigned, "new", "resolved", 5)
    held = log.incident(0)
    log.move(held, "new", "on_hold", 1)
    log.move(held, "on_hold", "resolved", 5)
    first_time_assigned = log.incident(0)
    log.add(
        "itsm.incident.updated.v1",
        first_time_assigned,
        1,
        {"changes": {"assignee": {"from": None, "to": "alice"}}, "priority": 3, "state": "new"},
    )
    log.move(first_time_assigned, "new", "resolved", 5)
    assert log.value("incident.first_contact_resolution") == (0.25, 4)
    assert log.value("workload.resolved", dimension="agent", dim_value="alice") == (1, 1)
    assert log.value("workload.resolved", dimension="group", dim_value="network") == (1, 1)


def test_backlog_and_its_age_are_counted_at_the_period_end_or_the_newest_event():
    log = Log()
    log.incident(0)  # open
    done = log.incident(0)
    log.move(done, "new", "resolved", 30)
    log.incident(60)  # open, younger
    assert log.value("incident.backlog") == (2, 2)
    # At the newest event (60 minutes): ages 60 and 0 minutes.
    assert log.value("incident.backlog_age.mean") == (30 * 60, 2)
    # The day before: nothing was logged yet.
    assert log.value("incident.backlog", kind="day", start=T0.date() - timedelta(days=1)) == (0, 0)


def test_an_incident_counts_under_each_of_its_services():
    log = Log()
    log.incident(0, services=["svc-a", "svc-b"])
    log.incident(0, services=["svc-b"])
    assert log.value("incident.volume", dimension="service", dim_value="svc-a") == (1, 1)
    assert log.value("incident.volume", dimension="service", dim_value="svc-b") == (2, 2)


def test_time_in_state_accumulates_across_visits():
    log = Log()
    incident = log.incident(0)
    log.move(incident, "new", "in_progress", 10)
    log.move(incident, "in_progress", "on_hold", 20)
    log.move(incident, "on_hold", "in_progress", 50)
    log.move(incident, "in_progress", "resolved", 55)
    assert log.value("workload.time_in_progress.mean") == (15 * 60, 1)
    assert log.value("workload.time_on_hold.mean") == (30 * 60, 1)
    assert log.value("workload.time_new.mean") == (10 * 60, 1)


def _change(log: Log, minutes: float, change_type: str = "normal", **fields) -> str:
    change_id = str(uuid.uuid4())
    data = {
        "change_id": change_id,
        "number": 1,
        "type": change_type,
        "origin": "manual",
        "title": "t",
        "requester": "carol",
        "content_hash": "x",
        **fields,
    }
    log.add("itsm.change.created.v1", change_id, minutes, data)
    return change_id


def _implemented(log: Log, change_id: str, minutes: float, outcome: str) -> None:
    implemented_at = (T0 + timedelta(minutes=minutes)).isoformat()
    log.add(
        "itsm.change.implemented.v1",
        change_id,
        minutes,
        {
            "change_id": change_id,
            "title": "t",
            "ci_ids": [],
            "implemented_at": implemented_at,
            "outcome": outcome,
        },
    )


def test_change_failure_rate_counts_failed_changes_and_those_that_caused_an_incident():
    log = Log()
    good = _change(log, 0)
    _implemented(log, good, 60, "successful")
    failed = _change(log, 0)
    _implemented(log, failed, 60, "failed")
    culprit = _change(log, 0, "emergency")
    _implemented(log, culprit, 60, "successful")
    incident = log.incident(70)
    log.add(
        "itsm.incident.change_suspected.v1",
        incident,
        71,
        {
            "change_id": culprit,
            "ci_id": "ci",
            "implemented_at": T0.isoformat(),
            "window_seconds": 3600,
        },
    )
    log.move(incident, "new", "resolved", 100)
    _implemented(log, _change(log, 1), 61, "successful")
    assert log.value("dora.change_failure_rate") == (0.5, 4)
    assert log.value("change.success_rate") == (0.75, 4)
    assert log.value("change.emergency_share") == (0.25, 4)
    assert log.value("incident.caused_by_change") == (1, 1)
    assert log.value("dora.time_to_restore.mean") == (30 * 60, 1)
    assert log.value("change.lead_time.mean") == ((60 * 3 + 60) * 60 / 4, 4)


def test_deployment_lead_time_runs_from_the_change_creation_to_the_deployment():
    log = Log()
    change = _change(log, 0, business_services=["svc-a"])
    for minutes, status in ((120, "succeeded"), (180, "failed")):
        deployment = str(uuid.uuid4())
        log.add(
            "itsm.change.deployment_recorded.v1",
            deployment,
            minutes,
            {
                "deployment_id": deployment,
                "environment": "prod",
                "status": status,
                "at": (T0 + timedelta(minutes=minutes)).isoformat(),
                "change_id": change,
                "source": "api",
            },
        )
    assert log.value("dora.lead_time.mean") == (7200.0, 1)
    frequency, count = log.value("dora.deployment_frequency", kind="day")
    # One successful deployment over the 3 hours elapsed of the day (up to the newest event).
    assert count == 1 and frequency == 1 / (12 / 24)
    assert log.value("dora.lead_time.mean", dimension="service", dim_value="svc-a") == (7200.0, 1)


def test_survey_score_and_response_rate_per_agent():
    log = Log()
    for score, agent in ((5, "alice"), (3, "alice"), (None, "bob")):
        subject = f"survey/{uuid.uuid4()}"
        data = {"record": "incident", "record_id": "r", "assignee": agent, "services": ["s"]}
        log.add("itsm.incident.survey.sent.v1", subject, 0, {**data, "expires_at": "2026-12-01"})
        if score is not None:
            log.add("itsm.incident.survey.answered.v1", subject, 10, {**data, "score": score})
    assert log.value("csat.score.mean") == (4.0, 2)
    assert log.value("csat.score.mean", dimension="agent", dim_value="alice") == (4.0, 2)
    assert log.value("csat.response_rate") == (2 / 3, 3)


def test_configuration_drift_and_unauthorized_modifications_are_counted_per_class():
    log = Log()
    ci = {
        "id": "ci-1",
        "ci_class": "server",
        "name": "db",
        "status": "active",
        "owner_team": None,
        "criticality": 2,
        "attributes": {},
        "external_ids": {},
        "controlled": True,
        "version": 1,
        "updated_at": T0.isoformat(),
        "updated_by": "x",
    }
    log.add("itsm.config.ci.created.v1", "ci-1", 0, {"ci": ci})
    log.add("itsm.config.ci.drift_detected.v1", "ci-1", 5, {"ci": ci, "source": "scan"})
    log.add("itsm.config.ci.unauthorized_change_detected.v1", "ci-1", 6, {"ci": ci})
    log.add("itsm.config.ci.created.v1", "ci-2", 0, {"ci": {**ci, "id": "ci-2"}})
    log.add("itsm.config.ci.retired.v1", "ci-2", 7, {"ci": {**ci, "id": "ci-2"}})
    assert log.value("config.cis", dimension="category", dim_value="server") == (1, 1)
    assert log.value("config.drift_found") == (1, 1)
    assert log.value("config.unauthorized_modifications") == (1, 1)


def test_iso_weeks_and_months_follow_the_calendar_of_the_time_zone():
    assert period_of("week", date(2026, 11, 29)) == Period("week", date(2026, 11, 23), "2026-W48")
    assert period_of("week", date(2027, 1, 1)).label == "2026-W53"
    months = kpis.periods("month", date(2026, 11, 15), 3)
    assert [p.label for p in months] == ["2026-11", "2026-12", "2027-01"]
    start, end = kpis.bounds(months[0], ZoneInfo("Europe/Paris"))
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert end - start == 30 * 86400


def test_a_value_on_the_wrong_side_of_its_target_is_breached():
    log = Log()
    incident = log.incident(0)
    log.move(incident, "new", "resolved", 120)
    [point] = kpis.evaluate(
        log.facts().values(),
        ["incident.resolve_time.mean"],
        "month",
        T0.date(),
        1,
        zone=UTC_ZONE,
        as_of=T0.timestamp(),
        targets={"incident.resolve_time.mean": 3600.0},
    )
    assert point.value == 7200.0 and point.breached is True


def test_every_definition_is_unique_and_documented():
    ids = [d.id for d in kpis.DEFINITIONS]
    assert len(ids) == len(set(ids))
    for definition in kpis.DEFINITIONS:
        assert definition.description and definition.title and definition.version >= 1


# --- the incremental fold equals the fold of the whole log -------------------------------------

_INCIDENT_MOVES = [
    ("new", "in_progress"),
    ("in_progress", "on_hold"),
    ("on_hold", "in_progress"),
    ("in_progress", "resolved"),
    ("resolved", "in_progress"),
    ("resolved", "closed"),
    ("new", "cancelled"),
]


@st.composite
def logs(draw: st.DrawFn) -> Log:
    log = Log()
    ids: list[str] = []
    changes: list[str] = []
    minutes = 0.0
    for _ in range(draw(st.integers(1, 40))):
        minutes += draw(st.floats(0, 600, allow_nan=False))
        action = draw(st.sampled_from(["incident", "move", "clock", "change", "suspect", "assign"]))
        if action == "incident" or not ids:
            ids.append(
                log.incident(
                    minutes,
                    priority=draw(st.integers(1, 5)),
                    services=draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)),
                    actor=draw(st.sampled_from(["alice", "bob"])),
                )
            )
        elif action == "move":
            before, after = draw(st.sampled_from(_INCIDENT_MOVES))
            log.move(draw(st.sampled_from(ids)), before, after, minutes)
        elif action == "clock":
            log.clock(
                draw(st.sampled_from(ids)),
                draw(st.sampled_from(["response", "resolution"])),
                draw(st.sampled_from(["met", "breached"])),
                minutes,
                draw(st.floats(0, 1e6, allow_nan=False)),
            )
        elif action == "change":
            changes.append(_change(log, minutes))
            if draw(st.booleans()):
                _implemented(
                    log, changes[-1], minutes, draw(st.sampled_from(["failed", "successful"]))
                )
        elif action == "suspect" and changes:
            log.add(
                "itsm.incident.change_suspected.v1",
                draw(st.sampled_from(ids)),
                minutes,
                {"change_id": draw(st.sampled_from(changes)), "ci_id": "c"},
            )
        else:
            log.add(
                "itsm.incident.updated.v1",
                draw(st.sampled_from(ids)),
                minutes,
                {
                    "changes": {
                        "assignee": {"from": None, "to": draw(st.sampled_from(["x", "y"]))}
                    },
                    "priority": 2,
                    "state": "new",
                },
            )
    return log


def _stored_fold(log: Log, chunk: int) -> dict[kpis.Key, kpis.Fact]:
    """As the KPI task folds: chunk by chunk, loading only the facts the chunk touches from a
    store of JSON documents and writing back those it changed."""
    store: dict[kpis.Key, str] = {}
    for start in range(0, len(log.events), chunk):
        events = log.events[start : start + chunk]
        keys = {key for event in events for key in kpis.touches(event)}
        facts = {k: kpis.Fact.from_json(json.loads(store[k])) for k in keys if k in store}
        changed: set[kpis.Key] = set()
        for event in events:
            changed.update(kpis.fold(facts, event))
        for key in changed:
            store[key] = json.dumps(facts[key].to_json())
    return {k: kpis.Fact.from_json(json.loads(v)) for k, v in store.items()}


@settings(max_examples=60, deadline=None)
@given(logs(), st.integers(1, 7))
def test_folding_in_stored_chunks_gives_the_facts_of_folding_the_whole_log(log, chunk):
    whole = log.facts()
    assert _stored_fold(log, chunk) == whole
    ids = [d.id for d in kpis.DEFINITIONS]
    as_of = max(e.time.timestamp() for e in log.events)

    def figures(facts):
        return kpis.evaluate(
            facts.values(),
            ids,
            "week",
            T0.date(),
            2,
            zone=UTC_ZONE,
            as_of=as_of,
            dimension="service",
        )

    assert figures(_stored_fold(log, chunk)) == figures(whole)


def test_the_gauge_has_a_series_for_the_busiest_services_only_and_no_record_or_tenant_label():
    from services.reporting.application.kpis import metric_samples

    log = Log()
    for n, service in ((3, "busy"), (2, "steady"), (1, "quiet")):
        for i in range(n):
            log.incident(i, priority=1 + i, services=[service])
    as_of = max(e.time.timestamp() for e in log.events)
    samples = metric_samples(list(log.facts().values()), as_of, T0.date(), UTC_ZONE, 2)
    assert {service for (_, _, service, _) in samples} == {"", "busy", "steady"}
    assert {period for (_, period, _, _) in samples} == {"day", "week", "month"}
    assert {priority for (_, _, _, priority) in samples} == {"", "P1", "P2", "P3"}
    assert samples[("incident.volume", "month", "", "")] == 6
    assert samples[("incident.volume", "day", "busy", "")] == 3
    assert samples[("incident.volume", "week", "", "P1")] == 3
