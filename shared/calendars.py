"""Business-hours calendars: when a service is open, and how much business time passes.

A calendar is a time zone, opening hours per weekday and a list of holidays
(`CalendarSpec`, the wire model that the config service stores and publishes and
the incident service rebuilds calendars from). `BusinessCalendar` does the
arithmetic that SLA clocks need. The rules:

- **Wall-clock hours.** Opening hours are local wall-clock times in the
  calendar's time zone: "mon 08:00-18:00" opens when the local clock shows 08:00
  and closes when it shows 18:00. End "24:00" is midnight at the end of the day,
  so "fri 22:00-24:00" plus "sat 00:00-06:00" is one continuous overnight shift.
- **Daylight saving time.** Each boundary is the *first instant at which the local
  clock shows that time or later*. So a day of 08:00-18:00 is 10 h of business
  time on every day whose clock change happens outside those hours. When the clock
  springs forward, a boundary inside the skipped hour is the moment of the jump
  (New York 01:00-04:00 on the spring-forward day is 2 h; an interval wholly
  inside the gap is closed that day). When the clock falls back, a boundary inside
  the repeated hour is its first occurrence, and an interval that spans the
  repeated hour gets it twice (Berlin 00:00-24:00 on the fall-back day is 25 h).
  The rule maps later wall times to later instants, so intervals never overlap.
- **Holidays** close the whole local day: the intervals listed for that weekday
  do not open. A shift that began the day before still runs until midnight.
- **Boundaries.** An interval is open from its start (inclusive) to its end
  (exclusive): `is_open` is false at closing time.
- **Deadlines.** `add_business_seconds(start, s)` is the earliest instant by which
  `s` seconds of business time have passed since `start`. For `s > 0` it is
  always inside business hours or exactly at a closing time: a target that uses
  up the last second of a day is due at closing, not at the next opening. For
  `s == 0` it is `start` itself, open or not (no business time has to pass), which
  keeps `add(add(t, a), b) == add(t, a + b)`. Seconds are counted to the
  microsecond.
- Instants must be timezone-aware (naive ones are refused with `ValueError`);
  results are in UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# In the order of `date.weekday()`.
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_CLOCK_TIME = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
# Names that exist on a machine but mean different zones on different machines.
_MACHINE_LOCAL_ZONES = frozenset({"localtime", "posixrules"})

Interval = tuple[datetime, datetime]


def _minutes(clock_time: str) -> int:
    hours, minutes = clock_time.split(":")
    return int(hours) * 60 + int(minutes)


class OpeningInterval(BaseModel):
    """Local wall-clock opening hours within one day, e.g. 08:00 to 18:00."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(description="Opening time, HH:MM (00:00 to 23:59).", examples=["08:00"])
    end: str = Field(description="Closing time, HH:MM (00:01 to 24:00).", examples=["18:00"])

    @field_validator("start")
    @classmethod
    def _start_is_a_clock_time(cls, value: str) -> str:
        if not _CLOCK_TIME.fullmatch(value):
            raise ValueError(f"expected a time HH:MM from 00:00 to 23:59, got {value!r}")
        return value

    @field_validator("end")
    @classmethod
    def _end_is_a_clock_time(cls, value: str) -> str:
        if value != "24:00" and not _CLOCK_TIME.fullmatch(value):
            raise ValueError(f"expected a time HH:MM from 00:01 to 24:00, got {value!r}")
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> Self:
        if self.start_minute >= self.end_minute:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_minute(self) -> int:
        """Minutes after local midnight at which the interval opens."""
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        """Minutes after local midnight at which the interval closes (1440 for 24:00)."""
        return _minutes(self.end)


def _sorted_and_disjoint(intervals: list[OpeningInterval]) -> list[OpeningInterval]:
    for before, after in pairwise(intervals):
        if after.start_minute < before.end_minute:
            raise ValueError(
                "intervals must be sorted by start and must not overlap:"
                f" {before.start}-{before.end} then {after.start}-{after.end}"
            )
    return intervals


# A validator on the dict's values reports errors at `weekly_hours.<day>`.
DayHours = Annotated[list[OpeningInterval], AfterValidator(_sorted_and_disjoint)]


class CalendarSpec(BaseModel):
    """A business-hours calendar as stored and published: time zone, weekly hours, holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(description="IANA time zone name.", examples=["Europe/Berlin"])
    weekly_hours: dict[Weekday, DayHours] = Field(
        description="Opening hours per weekday, local wall-clock time; a missing day is closed.",
        examples=[{"mon": [{"start": "08:00", "end": "18:00"}]}],
    )
    holidays: list[date] = Field(
        default_factory=list, description="Local days on which the calendar stays closed."
    )

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        if value in _MACHINE_LOCAL_ZONES:
            raise ValueError(f"{value!r} depends on the machine; name an IANA time zone")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @classmethod
    def always_open(cls, timezone: str = "UTC") -> CalendarSpec:
        """A 24x7 calendar: open every hour of every day, no holidays."""
        whole_day = [OpeningInterval(start="00:00", end="24:00")]
        return cls(timezone=timezone, weekly_hours=dict.fromkeys(WEEKDAYS, whole_day))


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _to_timedelta(seconds: float) -> timedelta:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number of at least 0, got {seconds!r}")
    return timedelta(seconds=seconds)


class BusinessCalendar:
    """Business-time arithmetic over a `CalendarSpec`; see the module docstring for the rules."""

    def __init__(self, spec: CalendarSpec) -> None:
        self.spec = spec
        self._zone = ZoneInfo(spec.timezone)
        self._holidays = frozenset(spec.holidays)
        self._hours: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple((i.start_minute, i.end_minute) for i in spec.weekly_hours.get(day, []))
            for day in WEEKDAYS
        )
        self._has_hours = any(self._hours)
        # Without holidays or clock changes every week has an open day; this bound
        # only stops a calendar whose hours never actually open from looping forever.
        self._longest_closed_run = 7 * (len(self._holidays) + 3)
        self._day_intervals = lru_cache(maxsize=4096)(self._compute_day_intervals)

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.spec!r})"

    def is_open(self, at: datetime) -> bool:
        """Whether the calendar is open at `at` (open at opening time, closed at closing time)."""
        at = _as_utc(at, "at")
        local_day = self._local_date(at)
        for offset in (-1, 0, 1):
            for start, end in self._day_intervals(local_day + timedelta(days=offset)):
                if start <= at < end:
                    return True
        return False

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """The open periods between `start` and `end`, clipped to them, merged, in UTC, in order."""
        # Checked here rather than in the generator, so that a naive datetime fails at the call.
        return self._merged(_as_utc(start, "start"), _as_utc(end, "end"))

    def _merged(self, start: datetime, end: datetime) -> Iterator[Interval]:
        pending: Interval | None = None
        for piece_start, piece_end in self._pieces(start, end):
            if pending is not None and piece_start <= pending[1]:
                pending = (pending[0], max(pending[1], piece_end))
                continue
            if pending is not None:
                yield pending
            pending = (piece_start, piece_end)
        if pending is not None:
            yield pending

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of business time from `start` to `end`; 0 when `end` is not after `start`."""
        return self._business_time(_as_utc(start, "start"), _as_utc(end, "end")).total_seconds()

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant by which `seconds` of business time have passed since `start`."""
        start = _as_utc(start, "start")
        remaining = _to_timedelta(seconds)
        if not remaining:
            return start
        if not self._has_hours:
            raise ValueError("the calendar has no opening hours, so no business time ever passes")
        for piece_start, piece_end in self._pieces(start, None):
            if piece_end - piece_start >= remaining:
                return piece_start + remaining
            remaining -= piece_end - piece_start
        raise AssertionError("unreachable: _pieces without an end never stops")  # pragma: no cover

    def _business_time(self, start: datetime, end: datetime) -> timedelta:
        total = timedelta()
        if end <= start:
            return total
        for piece_start, piece_end in self._pieces(start, end):
            total += piece_end - piece_start
        return total

    def _pieces(self, start: datetime, end: datetime | None) -> Iterator[Interval]:
        """Open intervals day by day (not merged), clipped to [start, end]; endless without end."""
        day = self._local_date(start) - timedelta(days=1)
        last_day = None if end is None else self._local_date(end) + timedelta(days=1)
        closed_run = 0
        while last_day is None or day <= last_day:
            intervals = self._day_intervals(day)
            closed_run = 0 if intervals else closed_run + 1
            if end is None and closed_run > self._longest_closed_run:
                raise ValueError(
                    f"the calendar stays closed for more than {self._longest_closed_run} days"
                    f" after {start.isoformat()}; its opening hours never open"
                )
            for interval_start, interval_end in intervals:
                if end is not None and interval_start >= end:
                    return
                clipped_start = max(interval_start, start)
                clipped_end = interval_end if end is None else min(interval_end, end)
                if clipped_start < clipped_end:
                    yield clipped_start, clipped_end
            day += timedelta(days=1)

    def _compute_day_intervals(self, day: date) -> tuple[Interval, ...]:
        if day in self._holidays:
            return ()
        midnight = datetime.combine(day, time())
        intervals = []
        for start_minute, end_minute in self._hours[day.weekday()]:
            start = self._first_instant_showing(midnight + timedelta(minutes=start_minute))
            end = self._first_instant_showing(midnight + timedelta(minutes=end_minute))
            if start < end:  # empty when the whole interval falls in a spring-forward gap
                intervals.append((start, end))
        return tuple(intervals)

    def _first_instant_showing(self, wall: datetime) -> datetime:
        return first_instant_showing(wall, self._zone)

    def _wall_time(self, instant: datetime) -> datetime:
        return instant.astimezone(self._zone).replace(tzinfo=None)

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()


def first_instant_showing(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the clock of `zone` shows the naive time `wall` or later."""
    # fold=0 is the first occurrence of a repeated wall time.
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # `wall` was skipped when the clock sprang forward: find the jump, to the second
    # (time zone offsets and transitions are whole seconds). The two folds of a
    # skipped time map to instants on either side of the jump.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    before, after = sorted((int(instant.timestamp()), int(other.timestamp())))
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def elapsed_business_seconds(
    calendar: BusinessCalendar,
    running: Iterable[tuple[datetime, datetime | None]],
    now: datetime,
) -> float:
    """Business seconds counted by `now` by a clock that ran during `running` (gaps are pauses).

    A period whose end is None is still running. Time after `now` does not count,
    and time covered by more than one period counts once.
    """
    now = _as_utc(now, "now")
    periods = []
    for period_start, period_end in running:
        start = _as_utc(period_start, "period start")
        if period_end is None:
            end = now
        else:
            end = _as_utc(period_end, "period end")
            if end < start:
                raise ValueError(f"a running period ends before it starts: {start} > {end}")
        periods.append((start, min(end, now)))
    total = timedelta()
    counted_until: datetime | None = None
    for start, end in sorted(periods):
        if counted_until is not None:
            start = max(start, counted_until)
        total += calendar._business_time(start, end)
        counted_until = end if counted_until is None else max(counted_until, end)
    return total.total_seconds()
