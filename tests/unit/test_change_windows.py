"""Maintenance and blackout windows (pure): occurrences in their time zone across the clock
changes and recurrences, exclusions, validation, revising and retiring."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.change.domain.windows import (
    ChangeWindow,
    contains,
    define_window,
    merge,
    retire_window,
    revise_window,
)
from shared.errors import ValidationFailed
from shared.events.catalogue import ChangeWindowDefinedV1, ChangeWindowRetiredV1
from shared.records.workflow import IllegalTransition

NOW = datetime(2026, 1, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def window(**fields: object) -> ChangeWindow:
    values: dict[str, object] = {
        "name": "Sunday night",
        "kind": "maintenance",
        "scope": "all",
        "start": datetime(2026, 1, 4, 2, 0),
        "duration_seconds": 2 * 3600,
        "time_zone": "Europe/Berlin",
        **fields,
    }
    made, _ = define_window(tenant_id="t1", number=1, actor="mia", now=NOW, **values)
    return made


def test_a_weekly_0200_berlin_window_stays_at_0200_local_through_both_clock_changes() -> None:
    weekly = window(rrule="FREQ=WEEKLY;BYDAY=SU")
    found = weekly.occurrences(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    assert found, "a weekly window occurs every week"
    for begins, finishes in found:
        local = begins.astimezone(BERLIN)
        if local.date() != date(2026, 3, 29):
            assert (local.hour, local.minute, local.weekday()) == (2, 0, 6)
        assert finishes - begins == timedelta(hours=2)
    offsets = {b.astimezone(BERLIN).utcoffset() for b, _ in found}
    assert offsets == {timedelta(hours=1), timedelta(hours=2)}
    # 29 March 2026 is the spring-forward Sunday: 02:00 does not exist, the window opens at the
    # jump (01:00 UTC), like every business-hours boundary in a gap.
    spring = [b for b, _ in found if b.date() == date(2026, 3, 29)]
    assert spring == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    # 25 October 2026 falls back at 03:00: 02:00 is not repeated at that hour, so one pass.
    autumn = [b for b, _ in found if b.astimezone(BERLIN).date() == date(2026, 10, 25)]
    assert autumn == [datetime(2026, 10, 25, 0, 0, tzinfo=UTC)]


@settings(max_examples=60, deadline=None)
@given(
    zone_name=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"]),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    hours=st.integers(1, 30),
    weekday=st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]),
    year=st.integers(2025, 2030),
)
def test_weekly_occurrences_keep_their_wall_clock_start_unless_it_was_skipped(
    zone_name: str, hour: int, minute: int, hours: int, weekday: str, year: int
) -> None:
    zone = ZoneInfo(zone_name)
    weekly = window(
        start=datetime(year - 1, 12, 1, hour, minute),
        duration_seconds=hours * 3600,
        time_zone=zone_name,
        rrule=f"FREQ=WEEKLY;BYDAY={weekday}",
    )
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    found = weekly.occurrences(start, end)
    assert 50 <= len(found) <= 54
    for (begins, finishes), following in zip(found, [*found[1:], None], strict=True):
        assert finishes - begins == timedelta(hours=hours)
        assert begins < end and finishes > start
        local = begins.astimezone(zone).replace(tzinfo=None)
        wanted = local.replace(hour=hour, minute=minute)
        # Either the clock shows the start, or the start fell in a gap and the window opens at
        # the jump: the first instant whose clock shows it or later.
        if local != wanted:
            assert local > wanted
            assert (begins - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < wanted
        if following is not None:
            assert following[0] > begins


@settings(max_examples=60, deadline=None)
@given(
    excluded=st.sets(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=40),
    rule=st.sampled_from(["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=MONTHLY;BYMONTHDAY=1"]),
)
def test_occurrences_never_start_on_an_excluded_date_and_only_those_disappear(
    excluded: set[date], rule: str
) -> None:
    plain = window(rrule=rule, start=datetime(2025, 12, 1, 22, 0))
    without = window(rrule=rule, start=datetime(2025, 12, 1, 22, 0), exclusions=sorted(excluded))
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    kept = without.occurrences(start, end)
    assert all(b.astimezone(BERLIN).date() not in excluded for b, _ in kept)
    assert kept == [
        o for o in plain.occurrences(start, end) if o[0].astimezone(BERLIN).date() not in excluded
    ]


def test_a_window_without_a_rule_occurs_once_where_it_overlaps_the_period() -> None:
    once = window(start=datetime(2026, 7, 1, 23, 30), duration_seconds=3600, time_zone="UTC")
    assert once.occurrences(datetime(2026, 7, 2, tzinfo=UTC), datetime(2026, 7, 3, tzinfo=UTC)) == [
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), datetime(2026, 7, 2, 0, 30, tzinfo=UTC))
    ]
    assert (
        once.occurrences(datetime(2026, 7, 3, tzinfo=UTC), datetime(2026, 7, 4, tzinfo=UTC)) == []
    )


def test_an_until_in_local_time_ends_the_recurrence() -> None:
    bounded = window(rrule="FREQ=DAILY;UNTIL=20260110T020000")
    found = bounded.occurrences(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert [b.astimezone(BERLIN).day for b, _ in found] == list(range(4, 11))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"rrule": "FREQ=SECONDLY"}, "rrule"),
        ({"rrule": "BYDAY=MO"}, "rrule"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule"),
        ({"rrule": "FREQ=DAILY;UNTIL=20260110T020000Z"}, "rrule"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"scope": "cis"}, "ci_ids"),
        ({"scope": "service"}, "service"),
        ({"ci_ids": ["a"]}, "ci_ids"),
        ({"duration_seconds": 10}, "duration"),
        ({"start": datetime(2026, 1, 4, 2, 0, tzinfo=UTC)}, "start"),
    ],
)
def test_a_window_that_does_not_fit_together_is_refused_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        window(**fields)
    assert named in [f.field for f in refused.value.fields]


def test_defining_revising_and_retiring_announce_each_version() -> None:
    made, events = define_window(
        tenant_id="t1",
        number=7,
        actor="mia",
        now=NOW,
        name="Payroll freeze",
        kind="blackout",
        scope="cis",
        ci_ids=["a", "b", "a"],
        start=datetime(2026, 12, 20, 0, 0),
        duration_seconds=14 * 86400,
        time_zone="Europe/Berlin",
    )
    assert made.reference == "WIN7" and made.ci_ids == ("a", "b")
    assert isinstance(events[0], ChangeWindowDefinedV1) and events[0].previous_version is None
    revised = revise_window(made, {"ci_ids": ("a", "b", "c")}, actor="mia", now=NOW)
    assert revised.record.version == 2 and revised.changes["ci_ids"]["to"] == ["a", "b", "c"]
    assert isinstance(revised.events[0], ChangeWindowDefinedV1)
    assert revised.events[0].previous_version == 1
    retired = retire_window(revised.record, "year end moved", actor="mia", now=NOW)
    assert retired.record.state == "retired" and retired.record.retire_reason == "year end moved"
    assert isinstance(retired.events[0], ChangeWindowRetiredV1)
    with pytest.raises(IllegalTransition):
        retire_window(retired.record, "again", actor="mia", now=NOW)
    with pytest.raises(ValidationFailed):
        revise_window(retired.record, {"name": "x"}, actor="mia", now=NOW)


def test_retiring_needs_a_reason() -> None:
    with pytest.raises(ValidationFailed) as refused:
        retire_window(window(), "  ", actor="mia", now=NOW)
    assert "reason" in [f.field for f in refused.value.fields]


def test_narrowing_a_scope_to_all_drops_the_cis_it_named() -> None:
    narrow = window(scope="cis", ci_ids=["a"])
    wide = revise_window(narrow, {"scope": "all"}, actor="mia", now=NOW).record
    assert wide.scope == "all" and wide.ci_ids == ()


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.integers(1, 50)).map(lambda p: (p[0], p[0] + p[1])),
        max_size=20,
    ),
    st.integers(0, 560),
    st.integers(1, 60),
)
def test_merged_intervals_contain_exactly_what_one_interval_of_them_contains(
    spans: list[tuple[int, int]], at: int, length: int
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)

    def instant(minute: int) -> datetime:
        return base + timedelta(minutes=minute)

    merged = merge((instant(a), instant(b)) for a, b in spans)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))
    covered = {m for a, b in spans for m in range(a, b)}
    inside = all(m in covered for m in range(at, at + length))
    assert contains(merged, instant(at), instant(at + length)) == inside
