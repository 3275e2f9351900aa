"""SLA clocks: counting business time, pauses, deadlines, retargets and outcomes."""

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.incident.domain.sla import (
    DEFAULT_WARNING_THRESHOLD,
    SlaClock,
    pauses,
    targets_for,
)
from shared.calendars import (
    WEEKDAYS,
    BusinessCalendar,
    CalendarSpec,
    OpeningInterval,
    elapsed_business_seconds,
)
from shared.events.catalogue import SlaTargetV1

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600
MICROSECOND = timedelta(microseconds=1)


def office(timezone="Europe/Berlin", holidays=()):
    """Monday to Friday, 08:00 to 18:00."""
    hours = [{"start": "08:00", "end": "18:00"}]
    weekly_hours = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), hours)
    return BusinessCalendar(
        CalendarSpec(timezone=timezone, weekly_hours=weekly_hours, holidays=list(holidays))
    )


def always_open(timezone="UTC"):
    return BusinessCalendar(CalendarSpec.always_open(timezone))


def berlin(*fields):
    """A Berlin wall-clock time; 2024-06-12 is a Wednesday."""
    return datetime(*fields, tzinfo=BERLIN)


def clock(target_hours, at, threshold=DEFAULT_WARNING_THRESHOLD, kind="resolution"):
    return SlaClock.start(kind, int(target_hours * HOUR), at, threshold)


# --- counting and deadlines ---------------------------------------------------------------------


def test_a_new_clock_runs_from_the_instant_the_work_is_logged():
    hours = office()
    started = clock(4, berlin(2024, 6, 12, 10))
    assert started.state == "running"
    assert started.elapsed(berlin(2024, 6, 12, 11, 30), hours) == 1.5 * HOUR
    assert started.warning_at(hours) == berlin(2024, 6, 12, 13)
    assert started.breach_at(hours) == berlin(2024, 6, 12, 14)


def test_a_clock_counts_only_business_hours():
    hours = office()
    started = clock(2, berlin(2024, 6, 14, 17))  # Friday, an hour before closing
    assert started.elapsed(berlin(2024, 6, 15, 12), hours) == HOUR  # Saturday
    assert started.remaining(berlin(2024, 6, 15, 12), hours) == HOUR
    assert started.warning_at(hours) == berlin(2024, 6, 17, 8, 30)  # Monday
    assert started.breach_at(hours) == berlin(2024, 6, 17, 9)


def test_a_holiday_does_not_count():
    hours = office(holidays=["2024-06-17"])
    started = clock(2, berlin(2024, 6, 14, 17))
    assert started.breach_at(hours) == berlin(2024, 6, 18, 9)


def test_a_target_that_uses_up_the_day_is_due_at_closing_time():
    assert clock(2, berlin(2024, 6, 12, 16)).breach_at(office()) == berlin(2024, 6, 12, 18)


def test_deadlines_are_instants_in_utc():
    deadline = clock(4, berlin(2024, 6, 12, 10)).breach_at(office())
    assert deadline.tzinfo is UTC
    assert deadline == datetime(2024, 6, 12, 12, tzinfo=UTC)


def test_the_policys_warning_threshold_sets_the_warning():
    started = clock(4, berlin(2024, 6, 12, 10), threshold=0.5)
    assert started.warning_at(office()) == berlin(2024, 6, 12, 12)


def test_a_tiny_threshold_still_warns_only_after_the_clock_has_counted():
    started = SlaClock.start("response", 1, berlin(2024, 6, 12, 10), warning_threshold=1e-9)
    assert started.warned_at is None
    assert started.warning_at(office()) == berlin(2024, 6, 12, 10) + MICROSECOND


def test_a_24x7_clock_counts_the_real_hours_of_a_spring_forward_day():
    # New York skips 02:00-03:00 on 2024-03-10: 24 business hours end at 01:00 the next day.
    started = SlaClock.start("resolution", 24 * HOUR, datetime(2024, 3, 10, tzinfo=NEW_YORK))
    assert started.breach_at(always_open("America/New_York")) == datetime(
        2024, 3, 11, 1, tzinfo=NEW_YORK
    )


# --- pausing -----------------------------------------------------------------------------------


def test_pending_customer_pauses_resolution_clock():
    pause_on = ["awaiting_customer"]
    assert pauses("awaiting_customer", pause_on)
    assert not pauses("awaiting_vendor", pause_on)
    assert not pauses(None, pause_on)


def test_a_paused_clock_has_no_deadline():
    hours = office()
    paused = clock(4, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 10), hours)
    assert paused.state == "paused"
    assert paused.warning_at(hours) is None
    assert paused.breach_at(hours) is None


def test_a_paused_clock_counts_no_business_time():
    hours = office()
    paused = clock(4, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 10), hours)
    assert paused.elapsed(berlin(2024, 6, 13, 17), hours) == HOUR


def test_resuming_moves_the_deadline_by_the_business_time_spent_paused():
    hours = office()
    started = clock(4, berlin(2024, 6, 12, 9))
    assert started.breach_at(hours) == berlin(2024, 6, 12, 13)
    paused = started.pause(berlin(2024, 6, 12, 10), hours)
    resumed = paused.resume(berlin(2024, 6, 13, 10), hours)
    assert resumed.elapsed_seconds == HOUR
    assert resumed.breach_at(hours) == berlin(2024, 6, 13, 13)
    assert resumed.paused_seconds == 24 * HOUR
    assert resumed.paused_business_seconds == 10 * HOUR


def test_a_pause_is_measured_in_wall_clock_and_in_business_time_while_it_lasts():
    hours = office()
    paused = clock(4, berlin(2024, 6, 14, 9)).pause(berlin(2024, 6, 14, 10), hours)
    monday = berlin(2024, 6, 17, 9)
    assert paused.paused(monday) == 71 * HOUR
    assert paused.paused_business(monday, hours) == 9 * HOUR


# --- stopping and outcomes ----------------------------------------------------------------------


def test_a_clock_stopped_before_its_breach_instant_meets_its_target():
    hours = office()
    started = clock(4, berlin(2024, 6, 12, 9))
    paused = started.pause(berlin(2024, 6, 12, 10), hours)
    resumed = paused.resume(berlin(2024, 6, 12, 11), hours)
    outcome = resumed.stop(berlin(2024, 6, 12, 12), hours).outcome()
    assert outcome.met
    assert outcome.result == "met"
    assert outcome.kind == "resolution"
    assert outcome.target_seconds == 4 * HOUR
    assert outcome.elapsed_seconds == 2 * HOUR
    assert outcome.paused_seconds == HOUR
    assert outcome.paused_business_seconds == HOUR
    assert outcome.started_at == berlin(2024, 6, 12, 9)
    assert outcome.stopped_at == berlin(2024, 6, 12, 12)
    assert outcome.warned_at is None
    assert outcome.breached_at is None


def test_a_stop_at_the_breach_instant_is_a_breach_and_one_microsecond_earlier_is_not():
    hours = office()
    started = clock(4, berlin(2024, 6, 12, 9))
    deadline = started.breach_at(hours)
    assert started.stop(deadline - MICROSECOND, hours).outcome().met
    at_deadline = started.stop(deadline, hours).outcome()
    assert at_deadline.result == "breached"
    assert at_deadline.breached_at == deadline
    assert at_deadline.elapsed_seconds == 4 * HOUR


def test_a_stop_after_closing_past_a_deadline_at_closing_is_a_breach():
    # No business time passes after 18:00, but the deadline has passed: the target is missed.
    hours = office()
    stopped = clock(2, berlin(2024, 6, 12, 16)).stop(berlin(2024, 6, 12, 19), hours)
    outcome = stopped.outcome()
    assert outcome.result == "breached"
    assert outcome.elapsed_seconds == 2 * HOUR
    assert outcome.breached_at == berlin(2024, 6, 12, 18)
    assert outcome.warned_at == berlin(2024, 6, 12, 17, 30)


def test_a_clock_stopped_while_paused_counts_the_pause_up_to_the_stop():
    hours = office()
    paused = clock(4, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 10), hours)
    outcome = paused.stop(berlin(2024, 6, 12, 15), hours).outcome()
    assert outcome.met
    assert outcome.elapsed_seconds == HOUR
    assert outcome.paused_seconds == 5 * HOUR
    assert outcome.paused_business_seconds == 5 * HOUR


def test_a_stopped_clock_has_no_deadline_and_counts_no_more_time():
    hours = office()
    stopped = clock(4, berlin(2024, 6, 12, 9)).stop(berlin(2024, 6, 12, 10), hours)
    assert stopped.state == "stopped"
    assert stopped.warning_at(hours) is None
    assert stopped.breach_at(hours) is None
    assert stopped.elapsed(berlin(2024, 6, 13, 10), hours) == HOUR


def test_only_a_stopped_clock_has_an_outcome():
    with pytest.raises(ValueError, match="running: only a stopped one has an outcome"):
        clock(4, berlin(2024, 6, 12, 9)).outcome()


def test_a_reopened_clock_continues_from_the_time_it_had_counted():
    hours = office()
    stopped = clock(4, berlin(2024, 6, 12, 9)).stop(berlin(2024, 6, 12, 10), hours)
    reopened = stopped.reopen(berlin(2024, 6, 12, 14))
    assert reopened.state == "running"
    assert reopened.elapsed(berlin(2024, 6, 12, 15), hours) == 2 * HOUR
    assert reopened.breach_at(hours) == berlin(2024, 6, 12, 17)
    assert reopened.paused_seconds == 0


# --- crossings ----------------------------------------------------------------------------------


def test_advancing_past_a_deadline_records_the_crossing_at_its_exact_instant():
    hours = office()
    started = clock(4, berlin(2024, 6, 12, 9))
    warning = started.warning_at(hours)
    advanced = started.advance(berlin(2024, 6, 12, 12, 30), hours)
    assert advanced.warned_at == warning
    assert advanced.warning_at(hours) is None  # recorded, so no longer pending
    assert advanced.breached_at is None
    assert advanced.breach_at(hours) == started.breach_at(hours)


def test_a_deadline_in_the_past_stays_the_instant_of_the_crossing_until_recorded():
    # A late scheduler still finds the true instant, and recording it changes nothing else.
    hours = office()
    started = clock(1, berlin(2024, 6, 12, 9))
    assert started.breach_at(hours) == berlin(2024, 6, 12, 10)
    late = started.advance(berlin(2024, 6, 13, 9), hours)
    assert late.breached_at == berlin(2024, 6, 12, 10)
    assert late.elapsed_seconds == 10 * HOUR


def test_pausing_records_a_crossing_the_scheduler_has_not_yet_seen():
    hours = office()
    started = clock(1, berlin(2024, 6, 12, 9))
    paused = started.pause(berlin(2024, 6, 12, 11), hours)
    assert paused.warned_at == berlin(2024, 6, 12, 9, 45)
    assert paused.breached_at == berlin(2024, 6, 12, 10)


# --- changes of priority or policy --------------------------------------------------------------


def test_a_higher_priority_keeps_the_elapsed_time_and_moves_the_deadline_closer():
    hours = office()
    started = clock(8, berlin(2024, 6, 12, 9))
    changed = started.retarget(
        berlin(2024, 6, 12, 11), hours, target_seconds=4 * HOUR, warning_threshold=0.75
    )
    assert changed.target_seconds == 4 * HOUR
    assert changed.elapsed(berlin(2024, 6, 12, 11), hours) == 2 * HOUR
    assert changed.breach_at(hours) == berlin(2024, 6, 12, 13)
    assert changed.warning_at(hours) == berlin(2024, 6, 12, 12)


def test_a_higher_priority_whose_target_is_used_up_breaches_the_clock_at_the_change():
    hours = office()
    change = berlin(2024, 6, 12, 12)
    changed = clock(8, berlin(2024, 6, 12, 9)).retarget(
        change, hours, target_seconds=HOUR, warning_threshold=0.75
    )
    assert changed.breached_at == change
    assert changed.warned_at == change
    assert changed.breach_at(hours) is None
    assert changed.stop(berlin(2024, 6, 12, 13), hours).outcome().result == "breached"


def test_a_lower_priority_takes_a_clock_out_of_breach():
    hours = office()
    breached = clock(1, berlin(2024, 6, 12, 9)).advance(berlin(2024, 6, 12, 11), hours)
    assert breached.breached_at is not None
    changed = breached.retarget(
        berlin(2024, 6, 12, 11), hours, target_seconds=8 * HOUR, warning_threshold=0.75
    )
    assert changed.breached_at is None
    assert changed.warned_at is None
    assert changed.breach_at(hours) == berlin(2024, 6, 12, 17)
    assert changed.stop(berlin(2024, 6, 12, 12), hours).outcome().met


def test_a_breach_that_holds_under_the_new_target_keeps_its_instant():
    hours = office()
    breached = clock(1, berlin(2024, 6, 12, 9)).advance(berlin(2024, 6, 12, 11), hours)
    changed = breached.retarget(
        berlin(2024, 6, 12, 12), hours, target_seconds=2 * HOUR, warning_threshold=0.75
    )
    assert changed.breached_at == berlin(2024, 6, 12, 10)
    assert changed.warned_at == berlin(2024, 6, 12, 9, 45)


def test_a_new_policy_calendar_counts_from_the_change_on():
    # Office hours until Friday 20:00, then 24x7: the hour counted on Friday is kept.
    old, new = office(), always_open("Europe/Berlin")
    started = clock(4, berlin(2024, 6, 14, 17))
    changed = started.retarget(
        berlin(2024, 6, 14, 20), old, target_seconds=4 * HOUR, warning_threshold=0.75
    )
    assert changed.elapsed_seconds == HOUR
    assert changed.breach_at(new) == berlin(2024, 6, 14, 23)


def test_a_change_while_paused_keeps_the_pause_going():
    hours = office()
    paused = clock(8, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 10), hours)
    changed = paused.retarget(
        berlin(2024, 6, 12, 12), hours, target_seconds=4 * HOUR, warning_threshold=0.5
    )
    assert changed.state == "paused"
    assert changed.breach_at(hours) is None
    assert changed.paused(berlin(2024, 6, 12, 13)) == 3 * HOUR
    resumed = changed.resume(berlin(2024, 6, 12, 13), hours)
    assert resumed.paused_seconds == 3 * HOUR
    assert resumed.breach_at(hours) == berlin(2024, 6, 12, 16)
    assert resumed.warning_at(hours) == berlin(2024, 6, 12, 14)


def test_priorities_pick_their_targets_from_the_policy():
    targets = {
        f"P{p}": SlaTargetV1(response_seconds=p * 900, resolution_seconds=p * 3600)
        for p in range(1, 6)
    }
    assert targets_for(targets, 2) == SlaTargetV1(response_seconds=1800, resolution_seconds=7200)
    with pytest.raises(ValueError, match="priority must be a whole number from 1 to 5"):
        targets_for(targets, 6)
    del targets["P5"]
    with pytest.raises(ValueError, match="no targets for P5"):
        targets_for(targets, 5)


# --- order, repetition and storage -------------------------------------------------------------


def test_asking_for_the_state_a_clock_is_already_in_changes_nothing():
    hours = office()
    running = clock(4, berlin(2024, 6, 12, 9))
    assert running.resume(berlin(2024, 6, 12, 10), hours) is running
    assert running.reopen(berlin(2024, 6, 12, 10)) is running
    paused = running.pause(berlin(2024, 6, 12, 10), hours)
    assert paused.pause(berlin(2024, 6, 12, 11), hours) is paused
    stopped = paused.stop(berlin(2024, 6, 12, 11), hours)
    assert stopped.stop(berlin(2024, 6, 12, 12), hours) is stopped


@pytest.mark.parametrize("action", ["pause", "resume", "retarget"])
def test_a_stopped_clock_cannot_pause_resume_or_change_its_target(action):
    hours = office()
    stopped = clock(4, berlin(2024, 6, 12, 9)).stop(berlin(2024, 6, 12, 10), hours)
    later = berlin(2024, 6, 12, 11)
    with pytest.raises(ValueError, match=r"stopped at .*; reopen it first"):
        if action == "retarget":
            stopped.retarget(later, hours, target_seconds=HOUR, warning_threshold=0.75)
        else:
            getattr(stopped, action)(later, hours)


def test_a_change_dated_before_the_last_change_is_refused():
    hours = office()
    paused = clock(4, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 11), hours)
    earlier = berlin(2024, 6, 12, 10)
    with pytest.raises(ValueError, match="before its last change"):
        paused.resume(earlier, hours)
    with pytest.raises(ValueError, match="before its last change"):
        paused.stop(earlier, hours)
    with pytest.raises(ValueError, match="before its last change"):
        paused.elapsed(earlier, hours)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="at must be a timezone-aware"):
        SlaClock.start("response", HOUR, datetime(2024, 6, 12, 9))


def test_a_clock_rebuilt_from_its_fields_is_the_same_clock():
    hours = office()
    paused = clock(1, berlin(2024, 6, 12, 9)).pause(berlin(2024, 6, 12, 11), hours)
    row = asdict(paused)
    assert all(isinstance(v, int | float | str | datetime | None) for v in row.values())
    assert SlaClock(**row) == paused
    # Instants come back in UTC whatever zone they were stored in.
    in_berlin = {k: v.astimezone(BERLIN) if isinstance(v, datetime) else v for k, v in row.items()}
    assert SlaClock(**in_berlin) == paused


RUNNING = {
    "kind": "response",
    "target_seconds": HOUR,
    "warning_threshold": 0.75,
    "started_at": datetime(2024, 6, 12, 9, tzinfo=UTC),
    "running_since": datetime(2024, 6, 12, 9, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "restore"}, "kind must be one of response, resolution"),
        ({"target_seconds": 0}, "target_seconds must be greater than 0"),
        ({"target_seconds": 1.5}, "target_seconds must be a whole number"),
        ({"warning_threshold": 1}, "warning_threshold must be a fraction"),
        ({"elapsed_seconds": -1}, "elapsed_seconds must be a finite number"),
        ({"paused_since": datetime(2024, 6, 12, 9, tzinfo=UTC)}, "exactly one of"),
        ({"running_since": None}, "exactly one of"),
        ({"running_since": datetime(2024, 6, 12, 8, tzinfo=UTC)}, "before it started"),
        ({"started_at": datetime(2024, 6, 12, 9)}, "started_at must be a timezone-aware"),
        ({"elapsed_seconds": 2700}, "warned_at must be set exactly when"),
        ({"breached_at": datetime(2024, 6, 12, 9, tzinfo=UTC)}, "breached_at must be set exactly"),
    ],
)
def test_fields_that_contradict_each_other_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        SlaClock(**{**RUNNING, **overrides})


# --- properties ----------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
WINDOW = (datetime(2024, 1, 1), datetime(2025, 12, 31))
PROPERTIES = settings(max_examples=60, deadline=None)


def _clock_changes():
    """Roughly where each zone changes its clocks inside WINDOW (to the day)."""
    changes = []
    for name in ZONES:
        zone = ZoneInfo(name)
        day = WINDOW[0].replace(hour=12, tzinfo=UTC)
        while day < WINDOW[1].replace(tzinfo=UTC):
            following = day + timedelta(days=1)
            if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
                changes.append(day)
            day = following
    return changes


CLOCK_CHANGES = _clock_changes()


@st.composite
def day_hours(draw):
    """Sorted, non-overlapping (sometimes touching) intervals on a quarter-hour grid."""
    marks = sorted(draw(st.sets(st.integers(0, 96), max_size=6)))
    spans = []
    for start, end in zip(marks[::2], marks[1::2], strict=False):
        if spans and draw(st.booleans()):
            start = spans[-1][1]
        spans.append((start, end))
    return [
        OpeningInterval(
            start=f"{s // 4:02d}:{s % 4 * 15:02d}", end=f"{e // 4:02d}:{e % 4 * 15:02d}"
        )
        for s, e in spans
    ]


specs = st.builds(
    CalendarSpec,
    timezone=st.sampled_from(ZONES),
    weekly_hours=st.dictionaries(st.sampled_from(WEEKDAYS), day_hours()).filter(
        lambda hours: any(hours.values())
    ),
    holidays=st.lists(
        st.integers(0, (WINDOW[1] - WINDOW[0]).days).map(lambda n: WINDOW[0].date() + timedelta(n)),
        max_size=8,
    ),
)
calendars = specs.map(BusinessCalendar)
# Starts near clock changes, so that sequences cross them.
instants = st.one_of(
    st.datetimes(*WINDOW, timezones=st.just(UTC)),
    st.builds(
        lambda change, offset: change + timedelta(seconds=offset),
        st.sampled_from(CLOCK_CHANGES),
        st.integers(-3 * 86_400, 86_400),
    ),
)
targets = st.builds(
    lambda hours, seconds: hours * HOUR + seconds, st.integers(0, 40), st.integers(1, HOUR)
)
thresholds = st.floats(0.01, 0.99)
# Whole hours plus a remainder in microseconds: plain integers would mostly be tiny gaps.
gaps = st.builds(
    lambda hours, microseconds: timedelta(hours=hours, microseconds=microseconds),
    st.integers(0, 72),
    st.integers(0, HOUR * 1_000_000),
)
steps = st.lists(
    st.tuples(st.sampled_from(["pause", "resume", "advance", "retarget"]), gaps, targets),
    max_size=8,
)


@dataclass
class Played:
    """A clock after a sequence of changes, and the periods it ran and paused in."""

    clock: SlaClock
    running: list[list] = field(default_factory=list)
    paused: list[list] = field(default_factory=list)
    retargets: list[tuple[datetime, SlaClock, SlaClock]] = field(default_factory=list)
    at: datetime | None = None


def play(hours, start, target, threshold, changes, retarget=True):
    played = Played(SlaClock.start("resolution", target, start, threshold), [[start, None]])
    at = start
    for action, gap, new_target in changes:
        at += gap
        before = played.clock
        if action == "pause":
            if before.state == "running":
                played.running[-1][1] = at
                played.paused.append([at, None])
            played.clock = before.pause(at, hours)
        elif action == "resume":
            if before.state == "paused":
                played.paused[-1][1] = at
                played.running.append([at, None])
            played.clock = before.resume(at, hours)
        elif action == "advance":
            played.clock = before.advance(at, hours)
        elif retarget:
            played.clock = before.retarget(
                at, hours, target_seconds=new_target, warning_threshold=threshold
            )
            played.retargets.append((at, before, played.clock))
    played.at = at
    return played


def ends_an_open_interval_or_is_inside_one(hours, instant):
    around = hours.open_intervals(instant - timedelta(days=2), instant + timedelta(seconds=1))
    return any(start < instant <= end for start, end in around)


def first_reached(hours, periods, due):
    """The first instant at which a clock that ran during `periods` had counted `due`."""
    counted = timedelta()
    for start, end in periods:
        piece = timedelta(seconds=hours.business_seconds(start, end))
        if counted + piece >= due:
            return hours.add_business_seconds(start, (due - counted).total_seconds())
        counted += piece
    return None


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps, gaps)
def test_pausing_and_resuming_never_loses_or_double_counts_time(
    hours, start, target, threshold, changes, extra
):
    played = play(hours, start, target, threshold, changes)
    now = played.at + extra
    running = [(s, e) for s, e in played.running]
    assert played.clock.elapsed(now, hours) == elapsed_business_seconds(hours, running, now)
    pauses_until_now = [(s, e or now) for s, e in played.paused]
    assert (
        played.clock.paused(now)
        == sum((e - s for s, e in pauses_until_now), timedelta()).total_seconds()
    )
    assert (
        played.clock.paused_business(now, hours)
        == sum(
            (timedelta(seconds=hours.business_seconds(s, e)) for s, e in pauses_until_now),
            timedelta(),
        ).total_seconds()
    )


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps)
def test_deadlines_never_fall_outside_business_hours(hours, start, target, threshold, changes):
    played = play(hours, start, target, threshold, changes)
    for deadline in (played.clock.warning_at(hours), played.clock.breach_at(hours)):
        if deadline is not None:
            assert deadline > played.clock.running_since
            assert ends_an_open_interval_or_is_inside_one(hours, deadline)


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps)
def test_the_breach_instant_is_reached_exactly_when_the_elapsed_time_is_the_target(
    hours, start, target, threshold, changes
):
    clock = play(hours, start, target, threshold, changes).clock
    deadline = clock.breach_at(hours)
    if deadline is None:
        assert clock.state != "running" or clock.breached_at is not None
        return
    assert clock.elapsed(deadline, hours) == clock.target_seconds
    assert clock.stop(deadline, hours).outcome().result == "breached"
    just_before = deadline - MICROSECOND
    if just_before >= clock.running_since:
        assert clock.elapsed(just_before, hours) < clock.target_seconds
        assert clock.stop(just_before, hours).outcome().met
    warning = clock.warning_at(hours)
    if warning is not None:
        assert warning <= deadline
        assert clock.elapsed(warning, hours) == clock.warning_after.total_seconds()


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps, gaps)
def test_crossings_are_recorded_at_the_instant_the_elapsed_time_reached_them(
    hours, start, target, threshold, changes, extra
):
    played = play(hours, start, target, threshold, changes, retarget=False)
    now = played.at + extra
    stopped = played.clock.stop(now, hours)
    running = [(s, e or now) for s, e in played.running]
    assert stopped.breached_at == first_reached(hours, running, stopped.target)
    assert stopped.warned_at == first_reached(hours, running, stopped.warning_after)
    assert stopped.outcome().met is (stopped.elapsed_seconds < target)


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps)
def test_a_retarget_keeps_the_elapsed_and_paused_time(hours, start, target, threshold, changes):
    played = play(hours, start, target, threshold, changes)
    for at, before, after in played.retargets:
        assert after.elapsed(at, hours) == before.elapsed(at, hours)
        assert after.paused(at) == before.paused(at)
        assert after.paused_business(at, hours) == before.paused_business(at, hours)
        assert after.state == before.state
        assert (after.breached_at is not None) is (after.elapsed_seconds >= after.target_seconds)


@PROPERTIES
@given(calendars, calendars, instants, gaps, gaps, targets)
def test_a_retarget_counts_the_old_calendar_up_to_the_change_and_the_new_one_after_it(
    old, new, start, before_change, after_change, target
):
    changed_at = start + before_change
    now = changed_at + after_change
    changed = SlaClock.start("response", target, start).retarget(
        changed_at, old, target_seconds=target, warning_threshold=0.75
    )
    assert (
        changed.elapsed(now, new)
        == (
            timedelta(seconds=old.business_seconds(start, changed_at))
            + timedelta(seconds=new.business_seconds(changed_at, now))
        ).total_seconds()
    )


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps, gaps)
def test_advancing_never_moves_a_deadline_it_has_not_reached(
    hours, start, target, threshold, changes, gap
):
    clock = play(hours, start, target, threshold, changes).clock
    at = clock.changed_at + gap
    advanced = clock.advance(at, hours)
    for pending, recorded, after in (
        (clock.warning_at(hours), advanced.warned_at, advanced.warning_at(hours)),
        (clock.breach_at(hours), advanced.breached_at, advanced.breach_at(hours)),
    ):
        if pending is not None and pending <= at:
            assert recorded == pending
            assert after is None
        else:
            assert after == pending


@PROPERTIES
@given(calendars, instants, targets, thresholds, steps)
def test_a_clock_rebuilt_from_its_fields_has_the_same_deadlines(
    hours, start, target, threshold, changes
):
    clock = play(hours, start, target, threshold, changes).clock
    rebuilt = SlaClock(**asdict(clock))
    assert rebuilt == clock
    assert rebuilt.warning_at(hours) == clock.warning_at(hours)
    assert rebuilt.breach_at(hours) == clock.breach_at(hours)
