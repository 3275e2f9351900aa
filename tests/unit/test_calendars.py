import json
import math
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.calendars import (
    WEEKDAYS,
    BusinessCalendar,
    CalendarSpec,
    OpeningInterval,
    elapsed_business_seconds,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0


def calendar(timezone="Europe/Berlin", holidays=(), **hours):
    """A calendar from `mon="08:00-12:00 13:00-18:00"`-style keyword arguments."""
    weekly_hours = {
        day: [dict(zip(("start", "end"), span.split("-"), strict=True)) for span in spans.split()]
        for day, spans in hours.items()
    }
    return BusinessCalendar(
        CalendarSpec(timezone=timezone, weekly_hours=weekly_hours, holidays=list(holidays))
    )


def office(timezone="Europe/Berlin", holidays=()):
    weekdays = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-18:00")
    return calendar(timezone, holidays, **weekdays)


def every_day(spans, timezone):
    return calendar(timezone, **dict.fromkeys(WEEKDAYS, spans))


def local(zone, *fields, fold=0):
    return datetime(*fields, tzinfo=zone, fold=fold)


def utc(*fields):
    return datetime(*fields, tzinfo=UTC)


# --- opening hours ---------------------------------------------------------------------------


def test_weekday_hours_are_open_and_the_weekend_is_closed():
    hours = office()
    assert hours.is_open(local(BERLIN, 2024, 6, 12, 10))  # Wednesday
    assert not hours.is_open(local(BERLIN, 2024, 6, 12, 19))
    assert not hours.is_open(local(BERLIN, 2024, 6, 15, 10))  # Saturday
    assert not hours.is_open(local(BERLIN, 2024, 6, 16, 10))  # Sunday


def test_open_at_opening_time_and_closed_at_closing_time():
    hours = office()
    assert hours.is_open(local(BERLIN, 2024, 6, 12, 8))
    assert not hours.is_open(local(BERLIN, 2024, 6, 12, 8) - timedelta(microseconds=1))
    assert hours.is_open(local(BERLIN, 2024, 6, 12, 18) - timedelta(microseconds=1))
    assert not hours.is_open(local(BERLIN, 2024, 6, 12, 18))


def test_the_same_instant_is_judged_in_the_calendars_time_zone():
    # 10:00 in Berlin is 04:00 in New York: open in one office, closed in the other.
    instant = local(BERLIN, 2024, 6, 12, 10)
    assert office("Europe/Berlin").is_open(instant)
    assert not office("America/New_York").is_open(instant)


def test_business_time_over_a_weekend_counts_only_weekday_hours():
    hours = office()
    friday_noon = local(BERLIN, 2024, 6, 14, 12)
    monday_noon = local(BERLIN, 2024, 6, 17, 12)
    assert hours.business_seconds(friday_noon, monday_noon) == 10 * HOUR


def test_business_time_is_zero_when_the_end_is_not_after_the_start():
    hours = office()
    noon = local(BERLIN, 2024, 6, 12, 12)
    assert hours.business_seconds(noon, noon) == 0
    assert hours.business_seconds(noon, noon - timedelta(hours=2)) == 0


def test_deadline_rolls_over_the_weekend_to_monday():
    hours = office()
    deadline = hours.add_business_seconds(local(BERLIN, 2024, 6, 14, 16), 4 * HOUR)
    assert deadline == local(BERLIN, 2024, 6, 17, 10)


def test_deadline_from_a_closed_instant_starts_counting_at_the_next_opening():
    hours = office()
    saturday = local(BERLIN, 2024, 6, 15, 3)
    assert hours.add_business_seconds(saturday, 30 * 60) == local(BERLIN, 2024, 6, 17, 8, 30)


def test_deadline_that_uses_up_the_day_lands_at_closing_time():
    hours = office()
    assert hours.add_business_seconds(local(BERLIN, 2024, 6, 12, 8), 10 * HOUR) == local(
        BERLIN, 2024, 6, 12, 18
    )
    assert hours.add_business_seconds(local(BERLIN, 2024, 6, 12, 8), 10 * HOUR + 1) == local(
        BERLIN, 2024, 6, 13, 8, 0, 1
    )


def test_a_lunch_break_is_skipped():
    hours = calendar(wed="08:00-12:00 13:00-17:00")
    deadline = hours.add_business_seconds(local(BERLIN, 2024, 6, 12, 11), 2 * HOUR)
    assert deadline == local(BERLIN, 2024, 6, 12, 14)


def test_an_overnight_shift_across_midnight_is_one_open_interval():
    hours = calendar(fri="22:00-24:00", sat="00:00-06:00")
    friday_night = local(BERLIN, 2024, 6, 14, 20)
    saturday_noon = local(BERLIN, 2024, 6, 15, 12)
    assert list(hours.open_intervals(friday_night, saturday_noon)) == [
        (utc(2024, 6, 14, 20), utc(2024, 6, 15, 4))
    ]
    assert hours.is_open(local(BERLIN, 2024, 6, 15, 0))
    assert hours.add_business_seconds(friday_night, 3 * HOUR) == local(BERLIN, 2024, 6, 15, 1)


def test_a_holiday_is_skipped():
    hours = office(holidays=[date(2024, 12, 25), date(2024, 12, 26)])
    assert not hours.is_open(local(BERLIN, 2024, 12, 25, 10))
    christmas_eve = local(BERLIN, 2024, 12, 24, 17)
    assert hours.add_business_seconds(christmas_eve, 2 * HOUR) == local(BERLIN, 2024, 12, 27, 9)
    assert hours.business_seconds(christmas_eve, local(BERLIN, 2024, 12, 28)) == 11 * HOUR


def test_a_holiday_does_not_cut_short_a_shift_that_began_the_day_before():
    hours = calendar(holidays=[date(2024, 6, 15)], fri="22:00-24:00", sat="00:00-06:00")
    friday_night = local(BERLIN, 2024, 6, 14, 20)
    assert hours.business_seconds(friday_night, local(BERLIN, 2024, 6, 16)) == 2 * HOUR
    assert not hours.is_open(local(BERLIN, 2024, 6, 15, 1))


def test_open_intervals_are_clipped_to_the_requested_span_and_given_in_utc():
    hours = office()
    intervals = list(
        hours.open_intervals(local(BERLIN, 2024, 6, 12, 10), local(BERLIN, 2024, 6, 13, 9))
    )
    assert intervals == [
        (utc(2024, 6, 12, 8), utc(2024, 6, 12, 16)),
        (utc(2024, 6, 13, 6), utc(2024, 6, 13, 7)),
    ]
    assert all(start.tzinfo is UTC and end.tzinfo is UTC for start, end in intervals)


def test_deadlines_are_given_in_utc():
    deadline = office().add_business_seconds(local(NEW_YORK, 2024, 6, 12, 9), HOUR)
    assert deadline.tzinfo is UTC
    assert deadline == utc(2024, 6, 12, 14)


def test_a_year_of_office_hours_counts_every_weekday_across_both_clock_changes():
    # 2024 has 262 weekdays; Berlin changes its clocks on two Sundays, outside office hours.
    hours = office()
    new_year = local(BERLIN, 2024, 1, 1)
    assert hours.business_seconds(new_year, local(BERLIN, 2025, 1, 1)) == 262 * 10 * HOUR
    assert hours.add_business_seconds(new_year, 262 * 10 * HOUR) == local(BERLIN, 2024, 12, 31, 18)


# --- daylight saving time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "whole_day_hours"),
    [
        ("Europe/Berlin", date(2024, 3, 31), 23),
        ("Europe/Berlin", date(2024, 10, 27), 25),
        ("America/New_York", date(2024, 3, 10), 23),
        ("America/New_York", date(2024, 11, 3), 25),
    ],
)
def test_a_clock_change_day_keeps_wall_clock_office_hours(zone, day, whole_day_hours):
    tz = ZoneInfo(zone)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)

    office_hours = every_day("08:00-18:00", zone)
    assert office_hours.business_seconds(midnight, next_midnight) == 10 * HOUR
    assert office_hours.add_business_seconds(midnight, 10 * HOUR) == midnight.replace(hour=18)

    whole_day = every_day("00:00-24:00", zone)
    assert whole_day.business_seconds(midnight, next_midnight) == whole_day_hours * HOUR


def test_deadline_across_spring_forward_keeps_local_opening_time():
    # Berlin springs forward on Sunday 31 March 2024; Monday opens at 08:00 CEST (06:00 UTC).
    hours = office()
    deadline = hours.add_business_seconds(local(BERLIN, 2024, 3, 29, 17), 2 * HOUR)
    assert deadline == local(BERLIN, 2024, 4, 1, 9) == utc(2024, 4, 1, 7)


def test_deadline_across_fall_back_keeps_local_opening_time():
    # New York falls back on Sunday 3 November 2024; Monday opens at 08:00 EST (13:00 UTC).
    hours = office("America/New_York")
    deadline = hours.add_business_seconds(local(NEW_YORK, 2024, 11, 1, 17), 2 * HOUR)
    assert deadline == local(NEW_YORK, 2024, 11, 4, 9) == utc(2024, 11, 4, 14)


def test_hours_that_span_the_spring_forward_gap_lose_the_skipped_hour():
    hours = every_day("01:00-04:00", "America/New_York")
    day = (local(NEW_YORK, 2024, 3, 10), local(NEW_YORK, 2024, 3, 11))
    assert hours.business_seconds(*day) == 2 * HOUR


def test_a_boundary_inside_the_spring_forward_gap_is_the_moment_of_the_jump():
    # 02:30 does not exist on 10 March 2024 in New York: the clock jumps from 02:00 EST to
    # 03:00 EDT at 07:00 UTC, and the interval opens then.
    hours = every_day("02:30-05:00", "America/New_York")
    day = (local(NEW_YORK, 2024, 3, 10), local(NEW_YORK, 2024, 3, 11))
    assert list(hours.open_intervals(*day)) == [(utc(2024, 3, 10, 7), utc(2024, 3, 10, 9))]
    assert hours.business_seconds(*day) == 2 * HOUR


def test_hours_wholly_inside_the_spring_forward_gap_are_closed_that_day():
    hours = every_day("02:15-02:45", "America/New_York")
    assert hours.business_seconds(local(NEW_YORK, 2024, 3, 10), local(NEW_YORK, 2024, 3, 11)) == 0
    assert (
        hours.business_seconds(local(NEW_YORK, 2024, 3, 11), local(NEW_YORK, 2024, 3, 12)) == 1800
    )
    assert hours.add_business_seconds(local(NEW_YORK, 2024, 3, 10), 60) == local(
        NEW_YORK, 2024, 3, 11, 2, 16
    )


def test_hours_that_span_the_fall_back_repeat_count_it_twice():
    hours = every_day("01:00-04:00", "Europe/Berlin")
    day = (local(BERLIN, 2024, 10, 27), local(BERLIN, 2024, 10, 28))
    assert hours.business_seconds(*day) == 4 * HOUR


def test_a_boundary_inside_the_fall_back_repeat_is_its_first_occurrence():
    # 02:30 happens twice on 27 October 2024 in Berlin: at 00:30 UTC (CEST) and 01:30 UTC (CET).
    opening = every_day("02:30-04:00", "Europe/Berlin")
    day = (local(BERLIN, 2024, 10, 27), local(BERLIN, 2024, 10, 28))
    assert list(opening.open_intervals(*day)) == [(utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 3))]
    assert opening.is_open(local(BERLIN, 2024, 10, 27, 2, 15, fold=1))

    closing = every_day("00:00-02:30", "Europe/Berlin")
    assert list(closing.open_intervals(*day)) == [(utc(2024, 10, 26, 22), utc(2024, 10, 27, 0, 30))]
    assert not closing.is_open(local(BERLIN, 2024, 10, 27, 2, 15, fold=1))


def test_a_clock_change_at_midnight_still_closes_and_opens_at_midnight():
    # Santiago springs forward at 24:00 on 7 September 2024 (-04 to -03): 00:00 on the 8th
    # never happens, so Saturday closes and Sunday opens at the jump, 04:00 UTC.
    hours = calendar("America/Santiago", sat="20:00-24:00", sun="00:00-02:00")
    santiago = ZoneInfo("America/Santiago")
    saturday = local(santiago, 2024, 9, 7, 12)
    assert list(hours.open_intervals(saturday, saturday + timedelta(days=1))) == [
        (utc(2024, 9, 8, 0), utc(2024, 9, 8, 5))
    ]
    assert hours.business_seconds(saturday, saturday + timedelta(days=1)) == 5 * HOUR


# --- 24x7, zero, errors ------------------------------------------------------------------------


def test_an_always_open_calendar_counts_real_elapsed_time_across_clock_changes():
    hours = BusinessCalendar(CalendarSpec.always_open("Europe/Berlin"))
    start = utc(2024, 3, 30, 12)
    assert hours.is_open(local(BERLIN, 2024, 3, 31, 3))
    assert hours.business_seconds(start, start + timedelta(days=3)) == 72 * HOUR
    assert hours.add_business_seconds(start, 72 * HOUR) == start + timedelta(days=3)
    assert list(hours.open_intervals(start, start + timedelta(days=3))) == [
        (start, start + timedelta(days=3))
    ]


def test_zero_seconds_is_due_at_the_start_even_when_closed():
    hours = office()
    saturday = local(BERLIN, 2024, 6, 15, 3)
    assert hours.add_business_seconds(saturday, 0) == saturday


def test_a_calendar_without_opening_hours_refuses_deadlines():
    hours = calendar()
    start = local(BERLIN, 2024, 6, 12, 10)
    with pytest.raises(ValueError, match="no opening hours"):
        hours.add_business_seconds(start, 1)
    assert hours.business_seconds(start, start + timedelta(days=400)) == 0
    assert not hours.is_open(start)


def test_naive_datetimes_are_refused():
    hours = office()
    naive = datetime(2024, 6, 12, 10)
    aware = local(BERLIN, 2024, 6, 12, 10)
    with pytest.raises(ValueError, match="at must be a timezone-aware"):
        hours.is_open(naive)
    with pytest.raises(ValueError, match="end must be a timezone-aware"):
        hours.business_seconds(aware, naive)
    with pytest.raises(ValueError, match="start must be a timezone-aware"):
        hours.add_business_seconds(naive, 60)
    with pytest.raises(ValueError, match="start must be a timezone-aware"):
        hours.open_intervals(naive, aware)
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        elapsed_business_seconds(hours, [(aware, None)], naive)


@pytest.mark.parametrize("seconds", [-1, math.inf, math.nan])
def test_negative_or_infinite_durations_are_refused(seconds):
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        office().add_business_seconds(local(BERLIN, 2024, 6, 12, 10), seconds)


# --- the wire model ------------------------------------------------------------------------------


def test_a_spec_round_trips_through_json():
    spec = CalendarSpec(
        timezone="America/New_York",
        weekly_hours={
            "mon": [
                OpeningInterval(start="08:00", end="12:00"),
                {"start": "13:00", "end": "17:30"},
            ],
            "fri": [{"start": "22:00", "end": "24:00"}],
            "sat": [{"start": "00:00", "end": "06:00"}],
        },
        holidays=["2024-12-25", date(2025, 1, 1)],
    )
    wire = json.loads(json.dumps(spec.model_dump(mode="json")))
    assert wire["holidays"] == ["2024-12-25", "2025-01-01"]
    assert wire["weekly_hours"]["fri"] == [{"start": "22:00", "end": "24:00"}]
    assert CalendarSpec.model_validate(wire) == spec


def test_always_open_is_every_day_all_day():
    spec = CalendarSpec.always_open()
    assert spec.timezone == "UTC"
    assert spec.holidays == []
    assert spec.weekly_hours == {
        day: [OpeningInterval(start="00:00", end="24:00")] for day in WEEKDAYS
    }


def error_locations(spec):
    with pytest.raises(ValidationError) as caught:
        CalendarSpec.model_validate(spec)
    return {".".join(map(str, error["loc"])): error["msg"] for error in caught.value.errors()}


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd", "utc"])
def test_an_unknown_time_zone_is_refused_naming_the_field(name):
    errors = error_locations({"timezone": name, "weekly_hours": {}})
    assert "unknown IANA time zone" in errors["timezone"]


def test_the_machines_local_time_zone_is_refused():
    errors = error_locations({"timezone": "localtime", "weekly_hours": {}})
    assert "depends on the machine" in errors["timezone"]


def test_overlapping_intervals_are_refused_naming_the_day():
    spans = [{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]
    errors = error_locations({"timezone": "UTC", "weekly_hours": {"tue": spans}})
    assert "must not overlap: 08:00-12:00 then 11:00-13:00" in errors["weekly_hours.tue"]


def test_unsorted_intervals_are_refused_naming_the_day():
    spans = [{"start": "13:00", "end": "17:00"}, {"start": "08:00", "end": "12:00"}]
    errors = error_locations({"timezone": "UTC", "weekly_hours": {"wed": spans}})
    assert "sorted by start" in errors["weekly_hours.wed"]


def test_touching_intervals_are_allowed():
    spans = [{"start": "08:00", "end": "12:00"}, {"start": "12:00", "end": "18:00"}]
    spec = CalendarSpec.model_validate({"timezone": "UTC", "weekly_hours": {"wed": spans}})
    hours = BusinessCalendar(spec)
    assert list(hours.open_intervals(utc(2024, 6, 12), utc(2024, 6, 13))) == [
        (utc(2024, 6, 12, 8), utc(2024, 6, 12, 18))
    ]


@pytest.mark.parametrize(
    ("interval", "location", "message"),
    [
        (
            {"start": "18:00", "end": "08:00"},
            "weekly_hours.mon.0",
            "start 18:00 must be before end",
        ),
        ({"start": "08:00", "end": "08:00"}, "weekly_hours.mon.0", "must be before end"),
        ({"start": "8:00", "end": "18:00"}, "weekly_hours.mon.0.start", "HH:MM"),
        ({"start": "24:00", "end": "24:00"}, "weekly_hours.mon.0.start", "HH:MM"),
        ({"start": "08:00", "end": "24:30"}, "weekly_hours.mon.0.end", "HH:MM"),
        ({"start": "08:00", "end": "18:60"}, "weekly_hours.mon.0.end", "HH:MM"),
        ({"start": "08:00"}, "weekly_hours.mon.0.end", "Field required"),
        ({"start": "08:00", "end": "18:00", "tz": "UTC"}, "weekly_hours.mon.0.tz", "Extra inputs"),
    ],
)
def test_a_malformed_interval_is_refused_naming_the_day(interval, location, message):
    errors = error_locations({"timezone": "UTC", "weekly_hours": {"mon": [interval]}})
    assert message in errors[location]


def test_an_unknown_weekday_is_refused():
    errors = error_locations({"timezone": "UTC", "weekly_hours": {"monday": []}})
    assert "weekly_hours.monday.[key]" in errors


def test_unknown_fields_and_malformed_holidays_are_refused():
    errors = error_locations(
        {"timezone": "UTC", "weekly_hours": {}, "holidays": ["2024-02-30"], "region": "DE"}
    )
    assert set(errors) == {"holidays.0", "region"}


def test_a_spec_is_frozen():
    spec = CalendarSpec.always_open()
    with pytest.raises(ValidationError):
        spec.timezone = "Europe/Berlin"


# --- clocks that pause ---------------------------------------------------------------------------


def test_a_paused_clock_counts_only_its_running_business_time():
    hours = office()
    running = [
        (local(BERLIN, 2024, 6, 12, 9), local(BERLIN, 2024, 6, 12, 11)),  # 2 h
        (local(BERLIN, 2024, 6, 12, 15), local(BERLIN, 2024, 6, 13, 9)),  # 3 h + 1 h
    ]
    assert elapsed_business_seconds(hours, running, local(BERLIN, 2024, 6, 14)) == 6 * HOUR


def test_a_clock_still_running_counts_up_to_now():
    hours = office()
    running = [
        (local(BERLIN, 2024, 6, 12, 9), local(BERLIN, 2024, 6, 12, 10)),
        (local(BERLIN, 2024, 6, 12, 14), None),
    ]
    assert elapsed_business_seconds(hours, running, local(BERLIN, 2024, 6, 12, 16)) == 3 * HOUR


def test_time_after_now_does_not_count():
    hours = office()
    running = [(local(BERLIN, 2024, 6, 12, 9), local(BERLIN, 2024, 6, 12, 17))]
    assert elapsed_business_seconds(hours, running, local(BERLIN, 2024, 6, 12, 10)) == HOUR
    assert elapsed_business_seconds(hours, running, local(BERLIN, 2024, 6, 12, 8)) == 0


def test_overlapping_running_periods_count_once():
    hours = office()
    running = [
        (local(BERLIN, 2024, 6, 12, 12), local(BERLIN, 2024, 6, 12, 14)),
        (local(BERLIN, 2024, 6, 12, 9), local(BERLIN, 2024, 6, 12, 13)),
    ]
    assert elapsed_business_seconds(hours, running, local(BERLIN, 2024, 6, 13)) == 5 * HOUR


def test_a_running_period_that_ends_before_it_starts_is_refused():
    hours = office()
    backwards = [(local(BERLIN, 2024, 6, 12, 12), local(BERLIN, 2024, 6, 12, 11))]
    with pytest.raises(ValueError, match="ends before it starts"):
        elapsed_business_seconds(hours, backwards, local(BERLIN, 2024, 6, 13))


# --- properties ----------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",  # clock changes at midnight
    "Australia/Lord_Howe",  # a half-hour clock change
    "Asia/Kolkata",  # a half-hour offset
]
WINDOW = (datetime(2024, 1, 1), datetime(2025, 12, 31))


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
DAY = 86_400_000_000  # microseconds
PROPERTIES = settings(max_examples=100, deadline=None)


@st.composite
def day_hours(draw):
    """Sorted, non-overlapping (sometimes touching) intervals on a quarter-hour grid."""
    marks = sorted(draw(st.sets(st.integers(0, 96), max_size=6)))
    spans = []
    for start, end in zip(marks[::2], marks[1::2], strict=False):
        if spans and draw(st.booleans()):
            start = spans[-1][1]  # touch the previous interval
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
instants = st.one_of(
    st.datetimes(*WINDOW, timezones=st.just(UTC)),
    st.builds(
        lambda change, offset: change + timedelta(seconds=offset),
        st.sampled_from(CLOCK_CHANGES),
        st.integers(-3 * 86_400, 3 * 86_400),
    ),
)


def moments(count):
    """`count` instants in order, within twelve days of each other."""
    offsets = st.lists(st.integers(0, 12 * DAY), min_size=count - 1, max_size=count - 1)
    return st.builds(
        lambda first, rest: [first, *(first + timedelta(microseconds=m) for m in sorted(rest))],
        instants,
        offsets,
    )


# Whole milliseconds, so that sums of durations are exact.
durations = st.integers(0, 3 * 86_400_000).map(lambda milliseconds: milliseconds / 1000)
positive_durations = st.integers(1, 3 * 86_400_000).map(lambda milliseconds: milliseconds / 1000)


def ends_an_open_interval_or_is_inside_one(hours, instant):
    around = hours.open_intervals(instant - timedelta(days=2), instant + timedelta(seconds=1))
    return any(start < instant <= end for start, end in around)


@PROPERTIES
@given(calendars, instants, positive_durations)
def test_a_deadline_never_falls_outside_business_hours(hours, start, seconds):
    deadline = hours.add_business_seconds(start, seconds)
    assert deadline > start
    assert ends_an_open_interval_or_is_inside_one(hours, deadline)


@PROPERTIES
@given(calendars, instants, durations)
def test_the_business_time_until_a_deadline_is_its_target(hours, start, seconds):
    deadline = hours.add_business_seconds(start, seconds)
    assert hours.business_seconds(start, deadline) == pytest.approx(seconds, abs=1e-6)


@PROPERTIES
@given(calendars, instants, durations, durations)
def test_deadlines_add_up(hours, start, first, second):
    in_two_steps = hours.add_business_seconds(hours.add_business_seconds(start, first), second)
    assert in_two_steps == hours.add_business_seconds(start, first + second)


@PROPERTIES
@given(calendars, moments(3))
def test_business_time_adds_up_across_a_split_point(hours, instants):
    start, middle, end = instants
    whole = hours.business_seconds(start, end)
    assert whole == pytest.approx(
        hours.business_seconds(start, middle) + hours.business_seconds(middle, end), abs=1e-6
    )
    intervals = hours.open_intervals(start, end)
    assert sum((e - s for s, e in intervals), timedelta()).total_seconds() == whole


@PROPERTIES
@given(calendars, moments(2), durations, durations)
def test_deadlines_and_business_time_never_go_backwards(hours, instants, short, long):
    early, late = instants
    short, long = sorted((short, long))
    assert hours.add_business_seconds(early, short) <= hours.add_business_seconds(late, short)
    assert hours.add_business_seconds(early, short) <= hours.add_business_seconds(early, long)
    assert hours.business_seconds(early, late) <= (late - early).total_seconds()
    assert hours.business_seconds(early, late) <= hours.business_seconds(
        early, late + timedelta(seconds=long)
    )


@PROPERTIES
@given(calendars, instants)
def test_open_intervals_are_ordered_disjoint_and_open(hours, start):
    end = start + timedelta(days=9)
    intervals = list(hours.open_intervals(start, end))
    for (_, previous_end), (next_start, _) in pairwise(intervals):
        assert previous_end < next_start
    for interval_start, interval_end in intervals:
        assert start <= interval_start < interval_end <= end
        assert hours.is_open(interval_start)
        assert hours.is_open(interval_end - timedelta(microseconds=1))
        if interval_end < end:
            assert not hours.is_open(interval_end)


def is_ambiguous(local_time):
    return local_time.replace(fold=1 - local_time.fold).utcoffset() != local_time.utcoffset()


@PROPERTIES
@given(specs, instants)
def test_is_open_matches_the_local_wall_clock(spec, instant):
    wall = instant.astimezone(ZoneInfo(spec.timezone))
    assume(not is_ambiguous(wall))  # a repeated wall time belongs to two instants
    seconds_into_day = wall.hour * 3600 + wall.minute * 60 + wall.second + wall.microsecond / 1e6
    expected = wall.date() not in spec.holidays and any(
        interval.start_minute * 60 <= seconds_into_day < interval.end_minute * 60
        for interval in spec.weekly_hours.get(WEEKDAYS[wall.weekday()], [])
    )
    assert BusinessCalendar(spec).is_open(instant) is expected


@PROPERTIES
@given(calendars, instants, st.integers(0, 200))
def test_business_time_counts_the_open_quarter_hours(hours, instant, quarters):
    # Every boundary in these zones falls on a UTC quarter hour, so each quarter is all
    # open or all closed.
    start = instant.replace(minute=instant.minute // 15 * 15, second=0, microsecond=0)
    quarter = timedelta(minutes=15)
    open_quarters = sum(hours.is_open(start + n * quarter) for n in range(quarters))
    assert hours.business_seconds(start, start + quarters * quarter) == open_quarters * 900


@PROPERTIES
@given(calendars, moments(3), st.integers(-2 * DAY, 14 * DAY))
def test_splitting_a_running_period_never_changes_elapsed_time(hours, instants, now):
    start, split, end = instants
    now = start + timedelta(microseconds=now)
    for stop in (end, None):
        whole = elapsed_business_seconds(hours, [(start, stop)], now)
        assert whole == elapsed_business_seconds(hours, [(start, split), (split, stop)], now)


@PROPERTIES
@given(calendars, moments(4), st.integers(-2 * DAY, 14 * DAY))
def test_a_pause_loses_exactly_the_business_time_it_covers(hours, instants, now):
    start, paused, resumed, end = instants
    now = start + timedelta(microseconds=now)
    for stop in (end, None):
        unbroken = elapsed_business_seconds(hours, [(start, stop)], now)
        with_pause = elapsed_business_seconds(hours, [(start, paused), (resumed, stop)], now)
        assert with_pause <= unbroken
        lost = hours.business_seconds(min(paused, now), min(resumed, now))
        assert with_pause + lost == pytest.approx(unbroken, abs=1e-6)


@PROPERTIES
@given(calendars, moments(3), durations)
def test_a_recomputed_deadline_keeps_the_time_already_elapsed(hours, instants, remaining):
    # The clock ran, paused, and resumed; at `changed` the target changes (a new priority) to
    # what has elapsed so far plus `remaining`.
    started, paused, resumed = instants
    running = [(started, paused), (resumed, None)]
    changed = resumed + timedelta(hours=1)
    elapsed = elapsed_business_seconds(hours, running, changed)
    target = elapsed + remaining

    deadline = hours.add_business_seconds(changed, target - elapsed)
    assert elapsed_business_seconds(hours, running, deadline) == pytest.approx(target, abs=1e-6)

    # Recomputing again before the deadline, with the same target, does not move it.
    later = changed + (deadline - changed) / 2
    again = hours.add_business_seconds(
        later, target - elapsed_business_seconds(hours, running, later)
    )
    assert abs(again - deadline) <= timedelta(microseconds=1)


@PROPERTIES
@given(specs)
def test_any_spec_round_trips_through_json(spec):
    wire = json.loads(json.dumps(spec.model_dump(mode="json")))
    assert CalendarSpec.model_validate(wire) == spec
