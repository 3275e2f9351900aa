"""The SLA engine's pure parts: which events a change announces, the API's view of a clock,
schedules, policy snapshots, the incident service's metrics and the scheduler's resilience."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.incident.adapters.sla import ClockRow, calendar_of, schedule_of
from services.incident.application import sla
from services.incident.domain.sla import SlaClock
from services.incident.metrics import IncidentMetrics
from shared.calendars import CalendarSpec
from shared.events.catalogue import SlaBreachedV1, SlaClockStoppedV1, SlaTargetV1

T0 = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)
ALWAYS = CalendarSpec.always_open()
TARGETS = {f"P{p}": (60 * p, 600 * p) for p in range(1, 6)}


def a_row(clock: SlaClock, *, sequence: int = 0, hold_reason: str | None = None) -> ClockRow:
    return ClockRow(
        tenant_id="t-1",
        record="incident",
        record_id="r-1",
        kind=clock.kind,
        policy="gold",
        policy_version=3,
        priority=2,
        targets=TARGETS,
        calendar=ALWAYS,
        pause_on=("awaiting_customer",),
        clock=clock,
        hold_reason=hold_reason,
        sequence=sequence,
    )


def started(target: int = 100, kind: str = "resolution") -> SlaClock:
    return SlaClock.start(kind, target, T0, 0.75)  # type: ignore[arg-type]


CAL = calendar_of(ALWAYS)


# --- what a change announces ---------------------------------------------------------------------


def test_a_late_advance_past_both_crossings_announces_the_warning_then_the_breach_numbered_on():
    before = started()
    after = a_row(before.advance(T0 + 200 * S, CAL), sequence=4)

    fired = sla.announce(before, after, T0 + 200 * S, timedelta(seconds=5))

    assert [(f.event, f.sequence, f.due_at, f.late) for f in fired] == [
        ("warning", 5, T0 + 75 * S, True),
        ("breach", 6, T0 + 100 * S, True),
    ]
    breach = fired[1].payload
    assert isinstance(breach, SlaBreachedV1)
    assert breach.clock.model_dump() == {
        "record": "incident",
        "record_id": "r-1",
        "kind": "resolution",
        "policy": "gold",
        "priority": 2,
        "target_seconds": 100,
    }
    assert (breach.elapsed_seconds, fired[1].subject) == (200.0, "sla/r-1/resolution")


def test_an_event_within_the_tolerance_is_not_late():
    before = started()
    after = a_row(before.advance(T0 + 80 * S, CAL))
    (warning,) = sla.announce(before, after, T0 + 80 * S, timedelta(seconds=5))
    assert (warning.event, warning.late) == ("warning", False)


def test_a_crossing_recorded_before_is_never_announced_again():
    warned = started().advance(T0 + 80 * S, CAL)
    assert sla.announce(warned, a_row(warned.advance(T0 + 90 * S, CAL)), T0 + 90 * S, S) == []


def test_a_stop_past_the_target_announces_the_crossings_first_and_the_stop_last():
    before = started()
    after = a_row(before.stop(T0 + 150 * S, CAL), sequence=1)

    fired = sla.announce(before, after, T0 + 150 * S, timedelta(seconds=5))

    assert [(f.event, f.sequence) for f in fired] == [("warning", 2), ("breach", 3), ("stopped", 4)]
    stopped = fired[-1].payload
    assert isinstance(stopped, SlaClockStoppedV1)
    assert (stopped.result, stopped.elapsed_seconds, stopped.stopped_at) == (
        "breached",
        150.0,
        T0 + 150 * S,
    )


def test_a_lower_target_that_unbreaches_a_clock_announces_nothing_and_a_new_breach_again():
    breached = started().advance(T0 + 120 * S, CAL)
    relaxed = breached.retarget(T0 + 120 * S, CAL, target_seconds=1000, warning_threshold=0.75)
    assert (relaxed.warned_at, relaxed.breached_at) == (None, None)  # 120 s of 1000 s
    assert sla.announce(breached, a_row(relaxed, sequence=2), T0 + 120 * S, S) == []
    tightened = relaxed.retarget(T0 + 130 * S, CAL, target_seconds=100, warning_threshold=0.75)
    fired = sla.announce(relaxed, a_row(tightened, sequence=2), T0 + 130 * S, S)
    assert [(f.event, f.sequence, f.due_at, f.late) for f in fired] == [
        ("warning", 3, T0 + 130 * S, False),
        ("breach", 4, T0 + 130 * S, False),
    ]


# --- the API's view ------------------------------------------------------------------------------


def test_the_view_counts_up_to_the_instant_read_without_changing_the_clock():
    clock = started()
    view = sla.view_of(a_row(clock), T0 + 80 * S)
    assert (view.state, view.elapsed_seconds, view.remaining_seconds) == ("running", 80.0, 20.0)
    assert (view.warning_at, view.breach_at) == (None, T0 + 100 * S)
    assert view.warned_at == T0 + 75 * S and not view.breached and view.outcome is None
    assert clock.warned_at is None
    body = view.as_json()
    assert body["breach_at"] == (T0 + 100 * S).isoformat()
    assert (body["breached"], body["kind"], body["priority"]) == (False, "resolution", 2)


def test_the_view_of_a_paused_clock_has_no_deadlines_and_counts_the_pause():
    paused = started().pause(T0 + 10 * S, CAL)
    view = sla.view_of(a_row(paused, hold_reason="awaiting_customer"), T0 + 70 * S)
    assert (view.state, view.elapsed_seconds, view.paused_seconds) == ("paused", 10.0, 60.0)
    assert (view.warning_at, view.breach_at, view.hold_reason) == (None, None, "awaiting_customer")


def test_the_view_of_a_stopped_clock_shows_its_outcome_and_never_reads_before_its_last_change():
    stopped = started().stop(T0 + 120 * S, CAL)
    view = sla.view_of(a_row(stopped), T0)  # an earlier instant reads as the stop
    assert (view.outcome, view.breached, view.elapsed_seconds) == ("breached", True, 120.0)
    assert view.as_of == T0 + 120 * S


# --- schedules and snapshots ---------------------------------------------------------------------


def test_the_schedule_is_the_earlier_pending_deadline():
    schedule = schedule_of(started(), CAL)
    assert (schedule.warning_at, schedule.breach_at, schedule.next_due_at) == (
        T0 + 75 * S,
        T0 + 100 * S,
        T0 + 75 * S,
    )
    warned = started().advance(T0 + 80 * S, CAL)
    assert schedule_of(warned, CAL).next_due_at == T0 + 100 * S


def test_a_calendar_that_never_opens_gives_no_deadline_instead_of_failing():
    never = calendar_of(CalendarSpec(timezone="UTC", weekly_hours={}))
    schedule = schedule_of(started(), never)
    assert schedule.next_due_at is None
    assert schedule.error and "no opening hours" in schedule.error


def test_calendars_are_built_once_per_distinct_spec():
    assert calendar_of(CalendarSpec.always_open()) is calendar_of(CalendarSpec.always_open())
    assert calendar_of(CalendarSpec.always_open("Europe/Berlin")) is not calendar_of(ALWAYS)


@dataclass(frozen=True)
class Snapshot:
    name: str
    version: int
    targets: dict[str, object]
    calendar: CalendarSpec
    pause_on: tuple[str, ...]
    warning_threshold: float


def test_a_policy_may_give_its_targets_as_catalogue_models_or_as_pairs():
    policy = Snapshot(
        "gold",
        1,
        {"P1": SlaTargetV1(response_seconds=60, resolution_seconds=600), "P2": (120, 1200)},
        ALWAYS,
        (),
        0.8,
    )
    targets = sla.targets_of(policy)  # type: ignore[arg-type]
    assert targets == {"P1": (60, 600), "P2": (120, 1200)}
    assert sla.target_seconds_for(targets, 2, "response") == 120
    assert sla.target_seconds_for(targets, 1, "resolution") == 600
    with pytest.raises(ValueError, match="no targets for P3"):
        sla.target_seconds_for(targets, 3, "response")
    with pytest.raises(ValueError, match="from 1 to 5"):
        sla.target_seconds_for(targets, 0, "response")


# --- metrics -------------------------------------------------------------------------------------

EXPECTED = {
    "itsm_incident_open": ("gauge", {"priority", "state"}),
    "itsm_incident_created": ("counter", {"origin"}),
    "itsm_incident_resolved": ("counter", set()),
    "itsm_incident_time_to_resolve_seconds": ("histogram", set()),
    "itsm_sla_warnings": ("counter", {"record", "kind", "late"}),
    "itsm_sla_breaches": ("counter", {"record", "kind", "late"}),
    "itsm_sla_detection_delay_seconds": ("histogram", set()),
    "itsm_alerts_received": ("counter", {"source"}),
    "itsm_alerts_deduplicated": ("counter", {"source"}),
    "itsm_alert_incidents_opened": ("counter", {"source"}),
    "itsm_alert_incidents_resolved": ("counter", {"source"}),
    "itsm_problem_suggestions": ("counter", {"basis"}),
    "itsm_change_correlations": ("counter", set()),
}


def test_the_incident_service_exposes_its_metrics_with_bounded_labels_only():
    registry = CollectorRegistry()
    metrics = IncidentMetrics(registry)
    metrics.incidents_open.labels("P1", "new").set(3)
    metrics.incidents_created.labels("alert").inc()
    for name in ("alerts_received", "alerts_deduplicated", "alert_incidents_opened"):
        getattr(metrics, name).labels("alertmanager").inc()
    metrics.alert_incidents_resolved.labels("alertmanager").inc()
    metrics.problem_suggestions.labels("ci").inc()
    metrics.sla_fired("warning", "incident", "response", late=False)
    metrics.sla_fired("breach", "request", "resolution", late=True)

    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }

    for name, (kind, labels) in EXPECTED.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} <= labels, (name, sample.labels)
    assert (
        registry.get_sample_value(
            "itsm_sla_breaches_total", {"record": "request", "kind": "resolution", "late": "true"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "itsm_sla_warnings_total", {"record": "incident", "kind": "response", "late": "false"}
        )
        == 1
    )


# --- the scheduler loop --------------------------------------------------------------------------


class DownPool:
    """A pool whose database is unreachable."""

    def __init__(self) -> None:
        self.attempts = 0
        self.tried_thrice = asyncio.Event()

    def acquire(self) -> object:
        self.attempts += 1
        if self.attempts >= 3:
            self.tried_thrice.set()
        raise OSError("connection refused")


async def test_the_scheduler_survives_an_unreachable_database_under_its_supervisor():
    from prometheus_client import CollectorRegistry

    from shared.supervision import (
        BackgroundTask,
        SupervisionMetrics,
        SupervisionPolicy,
        Supervisor,
    )

    pool = DownPool()
    registry = CollectorRegistry()
    supervisor = Supervisor(
        "incident",
        SupervisionMetrics(registry),
        SupervisionPolicy(first_backoff=0.01, max_backoff=0.01),
    )
    supervisor.start(BackgroundTask("sla-scheduler", lambda: sla.run_scheduler(pool, None)))  # type: ignore[arg-type]
    await asyncio.wait_for(pool.tried_thrice.wait(), timeout=5)
    labels = {"task": "sla-scheduler"}
    assert registry.get_sample_value("itsm_background_task_failures_total", labels) >= 2
    await asyncio.wait_for(supervisor.stop(), timeout=1)


async def test_the_scheduler_stops_when_told():
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(sla.run_scheduler(DownPool(), None, stop_event=stop), timeout=1)  # type: ignore[arg-type]
