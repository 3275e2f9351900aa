"""Service level management, pure: periods, availability arithmetic (calendars, planned downtime,
degradation, MTBF and MTRS), SLA results and the rules of improvement actions and findings."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.reporting.domain import service_levels as sl
from shared.calendars import CalendarSpec
from shared.errors import ValidationFailed
from shared.records.workflow import IllegalTransition

OFFICE = CalendarSpec.model_validate(
    {
        "timezone": "UTC",
        "weekly_hours": {
            day: [{"start": "08:00", "end": "18:00"}] for day in ("mon", "tue", "wed", "thu", "fri")
        },
    }
)
# 2026-11-30 is a Monday.
WEEK = sl.spans("week", date(2026, 12, 2), 1, "UTC")[0]
DAY = sl.spans("day", date(2026, 11, 30), 1, "UTC")[0]
AFTER = datetime(2027, 1, 1, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def outage(start: datetime, end: datetime | None, kind: str = "outage", **more: bool) -> sl.Outage:
    return sl.Outage(f"o-{start.isoformat()}", kind, start, end, **more)  # type: ignore[arg-type]


def test_periods_are_labelled_and_start_on_monday_and_the_first_of_the_month():
    [week] = sl.spans("week", date(2026, 12, 3), 1, "UTC")
    assert week.period.start == date(2026, 11, 30) and week.period.label == "2026-W49"
    assert week.end - week.start == timedelta(days=7)
    months = sl.spans("month", date(2026, 11, 17), 2, "UTC")
    assert [m.period.label for m in months] == ["2026-11", "2026-12"]
    assert months[0].start == at(1, 0) and months[0].end == at(1, 0, month=12)


def test_a_period_is_cut_at_local_midnight_of_the_tenants_time_zone_across_a_clock_change():
    [day] = sl.spans("day", date(2026, 3, 29), 1, "Europe/Berlin")
    assert day.start == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert (day.end - day.start) == timedelta(hours=23)  # the spring-forward day


def test_a_count_out_of_range_names_the_query_parameter():
    with pytest.raises(ValidationFailed) as refused:
        sl.spans("day", date(2026, 1, 1), 0, "UTC")
    assert refused.value.fields[0].field == "count"


def test_only_agreed_service_time_counts_towards_downtime():
    terms = sl.ServiceTerms(OFFICE, 0.99)
    # Monday 17:00 to Tuesday 09:00: one agreed hour each side of the night.
    point = sl.availability_of(
        "svc", WEEK, terms, [outage(at(30, 17), at(1, 9, month=12))], [], AFTER
    )
    assert point.agreed_seconds == 5 * 10 * 3600
    assert point.downtime_seconds == 2 * 3600
    assert point.availability == pytest.approx(48 / 50)
    assert point.outages == 1 and point.breached is True and point.target == 0.99


def test_planned_downtime_is_excluded_only_where_an_approved_window_covers_it():
    terms = sl.ServiceTerms(None, None)
    down = [outage(at(30, 10), at(30, 12))]
    window = [(at(30, 10), at(30, 11))]
    point = sl.availability_of("svc", DAY, terms, down, window, AFTER)
    assert point.downtime_seconds == 3600 and point.planned_downtime_seconds == 3600
    unplanned = sl.availability_of("svc", DAY, terms, down, [], AFTER)
    assert unplanned.downtime_seconds == 7200 and unplanned.planned_downtime_seconds == 0


def test_an_outage_wholly_inside_an_approved_window_is_no_outage():
    point = sl.availability_of(
        "svc",
        DAY,
        sl.ServiceTerms(None, 0.999),
        [outage(at(30, 2), at(30, 3))],
        [(at(30, 1), at(30, 4))],
        AFTER,
    )
    assert point.outages == 0 and point.downtime_seconds == 0 and point.availability == 1
    assert point.mtbf_seconds is None and point.mtrs_seconds is None and point.breached is False


def test_degradation_is_reported_apart_and_never_counts_as_downtime():
    point = sl.availability_of(
        "svc",
        DAY,
        sl.ServiceTerms(None, None),
        [outage(at(30, 1), at(30, 3), kind="degradation")],
        [],
        AFTER,
    )
    assert point.degraded_seconds == 7200 and point.downtime_seconds == 0
    assert point.availability == 1 and point.outages == 0


def test_a_withdrawn_outage_does_not_count_and_an_open_one_runs_to_now():
    now = at(30, 6)
    point = sl.availability_of(
        "svc",
        DAY,
        sl.ServiceTerms(None, None),
        [outage(at(30, 1), at(30, 2), withdrawn=True), outage(at(30, 5), None)],
        [],
        now,
    )
    assert point.agreed_seconds == 6 * 3600  # the day so far
    assert point.downtime_seconds == 3600 and point.outages == 1


def test_mtrs_and_mtbf_divide_downtime_and_uptime_by_the_outages():
    down = [outage(at(30, 1), at(30, 2)), outage(at(30, 10), at(30, 11))]
    point = sl.availability_of("svc", DAY, sl.ServiceTerms(None, None), down, [], AFTER)
    assert point.outages == 2
    assert point.mtrs_seconds == 3600
    assert point.mtbf_seconds == (86400 - 7200) / 2


def test_overlapping_outages_count_their_downtime_once():
    down = [outage(at(30, 1), at(30, 3)), outage(at(30, 2), at(30, 4))]
    point = sl.availability_of("svc", DAY, sl.ServiceTerms(None, None), down, [], AFTER)
    assert point.downtime_seconds == 3 * 3600 and point.outages == 2


def test_nothing_agreed_has_no_availability():
    saturday = sl.spans("day", date(2026, 12, 5), 1, "UTC")[0]
    point = sl.availability_of("svc", saturday, sl.ServiceTerms(OFFICE, 0.99), [], [], AFTER)
    assert point.agreed_seconds == 0 and point.availability is None and point.breached is None


def test_a_miss_is_certain_once_downtime_exceeds_what_the_whole_period_allows():
    terms = sl.ServiceTerms(None, 0.99)  # a day allows 864 s
    now = at(30, 1)
    small = sl.availability_of("svc", DAY, terms, [outage(at(30, 0), at(30, 0, 10))], [], now)
    large = sl.availability_of("svc", DAY, terms, [outage(at(30, 0), at(30, 0, 20))], [], now)
    assert not sl.missed_for_certain(small, terms, DAY)
    assert sl.missed_for_certain(large, terms, DAY)


def test_sla_results_compare_compliance_with_the_policys_objective_or_the_default():
    month = sl.spans("month", date(2026, 11, 1), 1, "UTC")[0]
    policies = [
        sl.PolicyTerms("gold", sl.policy_target_names(["P1"]), 0.9),
        sl.PolicyTerms("silver", sl.policy_target_names(["P1"]), None),
    ]
    outcomes = {
        ("gold", "P1 resolution", "2026-11"): (9, 1),
        ("silver", "P1 resolution", "2026-11"): (9, 1),
    }
    results = {(r.policy, r.target): r for r in sl.sla_results(policies, outcomes, month, 0.95)}
    assert results[("gold", "P1 resolution")].missed is False  # 90 % against 90 %
    silver = results[("silver", "P1 resolution")]
    assert silver.compliance == 0.9 and silver.objective == 0.95 and silver.missed is True
    # A target without clocks stopped in the period is reported, and not missed.
    response = results[("gold", "P1 response")]
    assert response.met == response.breached == 0 and response.compliance is None
    assert response.missed is False


def test_an_action_is_done_only_with_an_outcome_and_only_after_work_started():
    with pytest.raises(IllegalTransition):
        sl.check_status_details(sl.ACTIONS, "open", "done", {"outcome": "fixed"})
    with pytest.raises(ValidationFailed) as refused:
        sl.check_status_details(sl.ACTIONS, "in_progress", "done", {"outcome": None})
    assert refused.value.fields[0].field == "outcome"
    sl.check_status_details(sl.ACTIONS, "in_progress", "done", {"outcome": "fixed"})
    sl.check_status_details(sl.ACTIONS, "open", "cancelled", {"outcome": None})


def test_a_finding_closes_only_with_its_corrective_action():
    with pytest.raises(ValidationFailed):
        sl.check_status_details(sl.FINDINGS, "open", "closed", {"corrective_action": None})
    sl.check_status_details(sl.FINDINGS, "open", "closed", {"corrective_action": "trained"})


def test_an_open_action_past_its_due_date_is_overdue():
    action = sl.ImprovementActionRecord.first(
        tenant_id="t",
        state="open",
        actor="a",
        now=at(1, 0),
        title="x",
        source="manual",
        due_date=date(2026, 11, 10),
    )
    assert action.overdue(date(2026, 11, 11)) and not action.overdue(date(2026, 11, 10))
    done = sl.ImprovementActionRecord.first(
        tenant_id="t",
        state="done",
        actor="a",
        now=at(1, 0),
        title="x",
        source="manual",
        due_date=date(2026, 11, 10),
    )
    assert not done.overdue(date(2026, 12, 1))


def test_interval_subtraction_matches_a_minute_by_minute_count():
    import random

    rng = random.Random(3)
    base = at(1, 0)

    def intervals(n: int) -> list[tuple[datetime, datetime]]:
        found = []
        for _ in range(n):
            start = rng.randrange(0, 1000)
            found.append(
                (
                    base + timedelta(minutes=start),
                    base + timedelta(minutes=start + rng.randrange(1, 60)),
                )
            )
        return sl.union(found)

    for _ in range(50):
        a, b = intervals(20), intervals(20)
        minutes = {
            m
            for m in range(1100)
            if any(s <= base + timedelta(minutes=m) < e for s, e in a)
            and not any(s <= base + timedelta(minutes=m) < e for s, e in b)
        }
        assert sl.seconds_of(sl.subtract(a, b)) == len(minutes) * 60
        both = {
            m
            for m in range(1100)
            if any(s <= base + timedelta(minutes=m) < e for s, e in a)
            and any(s <= base + timedelta(minutes=m) < e for s, e in b)
        }
        assert sl.seconds_of(sl.intersect(a, b)) == len(both) * 60


def test_every_type_the_projections_read_is_in_the_event_catalogue():
    from services.reporting.application.service_levels import PROJECTED_TYPES
    from shared.events.catalogue import CATALOGUE

    assert [t for t in PROJECTED_TYPES if t not in CATALOGUE] == []
