"""SLA clocks: how much of a response or resolution target is used, and when it runs out.

Each incident and service request has two clocks, `response` and `resolution`. A clock
counts business time on its SLA policy's calendar (`shared/calendars.py`) towards the
policy's target for the work's priority (`targets_for`). Which state changes start, pause,
stop and reopen the clocks is the aggregate's business (response: the first response, i.e.
entering in_progress; resolution: resolved); a clock only counts. The rules:

- **Counting.** A running clock counts business seconds only: closed hours and holidays do
  not count. Seconds are exact to the microsecond, as in the calendars.
- **Pausing.** While the work is on hold for a reason the policy lists in `pause_on`
  (`pauses(reason, pause_on)`), the clock is paused and counts nothing. The time spent
  paused is kept apart, in wall-clock seconds (`paused_seconds`) and in business seconds
  (`paused_business_seconds`).
- **Warning and breach.** A clock is *warned* once its elapsed business time reaches
  `warning_threshold × target` (rounded to the microsecond, at least one) and *breached*
  once it reaches the target. So the breach instant is the first instant at which the clock
  is breached: a stop before it meets the target; a stop at it, or at any time after it
  (even at night, when no more business time passes), is a breach.
- **Deadlines.** `warning_at` and `breach_at` are the instants at which a running clock
  reaches its threshold and its target if nothing changes. Each is inside business hours or
  exactly at a closing time (the calendars' rule for deadlines). They are None while the
  clock is paused or stopped, and once the crossing is recorded in `warned_at` or
  `breached_at`. Until then the instant may already lie in the past (a late scheduler): it is
  still the exact instant of the crossing, and recomputing it gives the same instant.
- **Recording crossings.** A clock banks the time it has counted whenever it changes
  (`advance`, `pause`, `resume`, `retarget`, `stop`), and a crossing inside the banked time is
  recorded in `warned_at`/`breached_at` at its exact instant. `warned_at` and `breached_at`
  are set exactly when the banked elapsed time has reached the threshold and the target.
- **Changes of priority or policy.** `retarget` banks the time counted so far on the old
  calendar, then counts on towards the new target on the new calendar: elapsed and paused
  time are kept. Met or breached is judged against the target in force at the stop, so a
  lower priority can take a clock out of breach (`breached_at` goes back to None) and a
  higher one can breach it at once. A crossing that a retarget causes is dated at the
  retarget, because a clock keeps no history of when its elapsed time passed the new target;
  a crossing that holds under both targets keeps its date.
- **Order and repetition.** A clock changes in time order: an instant before its last change
  is refused with `ValueError`. Asking for the state a clock is already in (pause a paused
  clock, resume a running one, stop a stopped one, reopen one that is not stopped) returns it
  unchanged, whatever the instant, so a redelivered event does no harm. A stopped clock
  cannot pause, resume or be retargeted (`ValueError`); `reopen` it first. Reopening
  continues from the elapsed time at the stop; the time between stop and reopen counts as
  neither elapsed nor paused.
- **Storage.** A clock is plain fields: instants in UTC, seconds as floats. Elapsed time is
  banked at every change (`elapsed_seconds` counts up to `running_since`), so a clock is
  rebuilt from its row alone, and the constructor refuses a row whose fields contradict each
  other. The calendar is not part of the clock: every call that counts takes the calendar of
  the policy in force.

How the service uses a clock: persist it with its `warning_at` and `breach_at` as its
schedule; when one falls due, `advance` the clock to now and persist it; announce a warning
or a breach whenever a change sets `warned_at` or `breached_at` (compare the clock before
and after). The same rule covers a crossing that a pause, a retarget or a stop records first.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

from shared.calendars import BusinessCalendar
from shared.events.catalogue import SlaTargetV1

ClockKind = Literal["response", "resolution"]
ClockState = Literal["running", "paused", "stopped"]
Result = Literal["met", "breached"]
PriorityName = Literal["P1", "P2", "P3", "P4", "P5"]
PRIORITY_NAMES: Final[tuple[PriorityName, ...]] = get_args(PriorityName)
CLOCK_KINDS: Final[tuple[ClockKind, ...]] = get_args(ClockKind)
DEFAULT_WARNING_THRESHOLD: Final = 0.75


def pauses(reason: str | None, pause_on: Collection[str]) -> bool:
    """Whether being on hold for `reason` (None: not on hold) pauses a policy's clocks."""
    return reason is not None and reason in pause_on


def targets_for(targets: Mapping[PriorityName, SlaTargetV1], priority: int) -> SlaTargetV1:
    """The response and resolution targets of a priority 1 (P1) to 5 (P5) in a policy."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
        raise ValueError(f"priority must be a whole number from 1 to 5, got {priority!r}")
    name = PRIORITY_NAMES[priority - 1]
    try:
        return targets[name]
    except KeyError:
        raise ValueError(f"the SLA policy has no targets for {name}") from None


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _duration(seconds: float) -> timedelta:
    # Sums go through timedelta so that banked seconds stay exact to the microsecond.
    return timedelta(seconds=seconds)


def _warning_after(target_seconds: int, warning_threshold: float) -> timedelta:
    # At least a microsecond, so that a new clock is never warned before it has counted.
    return max(_duration(warning_threshold * target_seconds), timedelta(microseconds=1))


def _check_target(target_seconds: int, warning_threshold: float) -> None:
    if isinstance(target_seconds, bool) or not isinstance(target_seconds, int):
        raise ValueError(f"target_seconds must be a whole number, got {target_seconds!r}")
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be greater than 0, got {target_seconds}")
    if not 0 < warning_threshold < 1:
        raise ValueError(
            f"warning_threshold must be a fraction between 0 and 1 (exclusive),"
            f" got {warning_threshold!r}"
        )


def _check_seconds(value: float, name: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")


@dataclass(frozen=True)
class SlaOutcome:
    """How a stopped clock ended: met or breached, and the time it counted."""

    kind: ClockKind
    result: Result
    target_seconds: int
    elapsed_seconds: float
    paused_seconds: float
    paused_business_seconds: float
    started_at: datetime
    stopped_at: datetime
    warned_at: datetime | None
    breached_at: datetime | None

    @property
    def met(self) -> bool:
        """Whether the clock stopped before its breach instant."""
        return self.result == "met"


@dataclass(frozen=True)
class SlaClock:
    """One response or resolution clock; see the module docstring for the rules.

    Exactly one of `running_since`, `paused_since` and `stopped_at` is set: it is the
    instant up to which `elapsed_seconds` (business seconds counted while running) and
    `paused_seconds`/`paused_business_seconds` (time spent paused) are banked. For a paused
    clock `paused_since` is the start of the pause, or the last retarget during it.
    """

    kind: ClockKind
    target_seconds: int
    warning_threshold: float
    started_at: datetime
    elapsed_seconds: float = 0.0
    running_since: datetime | None = None
    paused_since: datetime | None = None
    stopped_at: datetime | None = None
    paused_seconds: float = 0.0
    paused_business_seconds: float = 0.0
    warned_at: datetime | None = None
    breached_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in CLOCK_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CLOCK_KINDS)}, got {self.kind!r}")
        _check_target(self.target_seconds, self.warning_threshold)
        for name in ("elapsed_seconds", "paused_seconds", "paused_business_seconds"):
            value = float(getattr(self, name))
            _check_seconds(value, name)
            object.__setattr__(self, name, value)
        for name in (
            "started_at",
            "running_since",
            "paused_since",
            "stopped_at",
            "warned_at",
            "breached_at",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc(value, name))
        states = [self.running_since, self.paused_since, self.stopped_at]
        if sum(instant is not None for instant in states) != 1:
            raise ValueError(
                "exactly one of running_since, paused_since and stopped_at must be set, got"
                f" {self.running_since!r}, {self.paused_since!r} and {self.stopped_at!r}"
            )
        if self.changed_at < self.started_at:
            raise ValueError(
                f"the clock changed at {self.changed_at.isoformat()},"
                f" before it started at {self.started_at.isoformat()}"
            )
        elapsed = _duration(self.elapsed_seconds)
        for crossing, due, name in (
            (self.warned_at, self.warning_after, "warned_at"),
            (self.breached_at, self.target, "breached_at"),
        ):
            if (crossing is not None) != (elapsed >= due):
                raise ValueError(
                    f"{name} must be set exactly when the elapsed time has reached"
                    f" {due.total_seconds()} seconds; it is {crossing!r} at"
                    f" {self.elapsed_seconds} seconds"
                )
            if crossing is not None and not self.started_at <= crossing <= self.changed_at:
                raise ValueError(
                    f"{name} must lie between the start and the last change of the clock,"
                    f" got {crossing.isoformat()}"
                )
        if self.warned_at and self.breached_at and self.breached_at < self.warned_at:
            raise ValueError("breached_at must not be before warned_at")

    # --- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> ClockState:
        """Whether the clock is running, paused or stopped."""
        if self.running_since is not None:
            return "running"
        if self.paused_since is not None:
            return "paused"
        return "stopped"

    @property
    def changed_at(self) -> datetime:
        """The instant of the clock's last change: no later change may be dated before it."""
        instant = self.running_since or self.paused_since or self.stopped_at
        assert instant is not None  # __post_init__ makes sure one is set
        return instant

    @property
    def target(self) -> timedelta:
        """The business time after which the clock is breached."""
        return timedelta(seconds=self.target_seconds)

    @property
    def warning_after(self) -> timedelta:
        """The business time after which the clock is warned (threshold × target)."""
        return _warning_after(self.target_seconds, self.warning_threshold)

    def elapsed(self, at: datetime, calendar: BusinessCalendar) -> float:
        """Business seconds counted by `at` (not before the last change)."""
        at = self._not_before_last_change(at, "read")
        return self._elapsed(at, calendar).total_seconds()

    def remaining(self, at: datetime, calendar: BusinessCalendar) -> float:
        """Business seconds left before the breach at `at`; negative when overdue."""
        at = self._not_before_last_change(at, "read")
        return (self.target - self._elapsed(at, calendar)).total_seconds()

    def paused(self, at: datetime) -> float:
        """Wall-clock seconds spent paused by `at` (not before the last change)."""
        at = self._not_before_last_change(at, "read")
        total = _duration(self.paused_seconds)
        if self.paused_since is not None:
            total += at - self.paused_since
        return total.total_seconds()

    def paused_business(self, at: datetime, calendar: BusinessCalendar) -> float:
        """Business seconds that passed while the clock was paused, by `at`."""
        at = self._not_before_last_change(at, "read")
        total = _duration(self.paused_business_seconds)
        if self.paused_since is not None:
            total += _duration(calendar.business_seconds(self.paused_since, at))
        return total.total_seconds()

    def warning_at(self, calendar: BusinessCalendar) -> datetime | None:
        """When the running clock reaches its threshold; None if paused, stopped or warned."""
        if self.warned_at is not None:
            return None
        return self._reaches(self.warning_after, calendar)

    def breach_at(self, calendar: BusinessCalendar) -> datetime | None:
        """When the running clock reaches its target; None if paused, stopped or breached."""
        if self.breached_at is not None:
            return None
        return self._reaches(self.target, calendar)

    def outcome(self) -> SlaOutcome:
        """How the clock ended; only a stopped clock has an outcome."""
        if self.stopped_at is None:
            raise ValueError(
                f"the {self.kind} clock is {self.state}: only a stopped one has an outcome"
            )
        return SlaOutcome(
            kind=self.kind,
            result="met" if self.breached_at is None else "breached",
            target_seconds=self.target_seconds,
            elapsed_seconds=self.elapsed_seconds,
            paused_seconds=self.paused_seconds,
            paused_business_seconds=self.paused_business_seconds,
            started_at=self.started_at,
            stopped_at=self.stopped_at,
            warned_at=self.warned_at,
            breached_at=self.breached_at,
        )

    # --- changing ------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        kind: ClockKind,
        target_seconds: int,
        at: datetime,
        warning_threshold: float = DEFAULT_WARNING_THRESHOLD,
    ) -> SlaClock:
        """A clock that starts running at `at` towards `target_seconds` of business time."""
        at = _utc(at, "at")
        return cls(
            kind=kind,
            target_seconds=target_seconds,
            warning_threshold=warning_threshold,
            started_at=at,
            running_since=at,
        )

    def advance(self, at: datetime, calendar: BusinessCalendar) -> SlaClock:
        """The same clock with its time banked up to `at`, recording any crossing on the way."""
        return self._bank(self._not_before_last_change(at, "advance"), calendar)

    def pause(self, at: datetime, calendar: BusinessCalendar) -> SlaClock:
        """The clock paused from `at`; a paused clock is returned unchanged."""
        if self.paused_since is not None:
            return self
        self._refuse_if_stopped("pause")
        banked = self._bank(self._not_before_last_change(at, "pause"), calendar)
        return replace(banked, running_since=None, paused_since=banked.changed_at)

    def resume(self, at: datetime, calendar: BusinessCalendar) -> SlaClock:
        """The clock running again from `at`; a running clock is returned unchanged."""
        if self.running_since is not None:
            return self
        self._refuse_if_stopped("resume")
        banked = self._bank(self._not_before_last_change(at, "resume"), calendar)
        return replace(banked, paused_since=None, running_since=banked.changed_at)

    def stop(self, at: datetime, calendar: BusinessCalendar) -> SlaClock:
        """The clock stopped for good at `at` (see `outcome`); a stopped clock is unchanged."""
        if self.stopped_at is not None:
            return self
        banked = self._bank(self._not_before_last_change(at, "stop"), calendar)
        return replace(banked, running_since=None, paused_since=None, stopped_at=banked.changed_at)

    def reopen(self, at: datetime) -> SlaClock:
        """A stopped clock running again from `at`, keeping its time; others are unchanged."""
        if self.stopped_at is None:
            return self
        at = self._not_before_last_change(at, "reopen")
        return replace(self, stopped_at=None, running_since=at)

    def retarget(
        self,
        at: datetime,
        calendar: BusinessCalendar,
        *,
        target_seconds: int,
        warning_threshold: float,
    ) -> SlaClock:
        """The clock counting towards a new target from `at`, keeping the time counted so far.

        `calendar` is the one the clock has counted on until `at` (the old policy's); later
        calls take the new policy's calendar.
        """
        self._refuse_if_stopped("retarget")
        _check_target(target_seconds, warning_threshold)
        banked = self._bank(self._not_before_last_change(at, "retarget"), calendar)
        at = banked.changed_at
        elapsed = _duration(banked.elapsed_seconds)
        warning_after = _warning_after(target_seconds, warning_threshold)
        target = timedelta(seconds=target_seconds)
        return replace(
            banked,
            target_seconds=target_seconds,
            warning_threshold=warning_threshold,
            warned_at=(banked.warned_at or at) if elapsed >= warning_after else None,
            breached_at=(banked.breached_at or at) if elapsed >= target else None,
        )

    # --- internals -----------------------------------------------------------------------------

    def _not_before_last_change(self, at: datetime, action: str) -> datetime:
        at = _utc(at, "at")
        if at < self.changed_at:
            raise ValueError(
                f"cannot {action} the {self.kind} clock at {at.isoformat()}:"
                f" that is before its last change at {self.changed_at.isoformat()}"
            )
        return at

    def _refuse_if_stopped(self, action: str) -> None:
        if self.stopped_at is not None:
            raise ValueError(
                f"cannot {action} the {self.kind} clock: it stopped at"
                f" {self.stopped_at.isoformat()}; reopen it first"
            )

    def _elapsed(self, at: datetime, calendar: BusinessCalendar) -> timedelta:
        elapsed = _duration(self.elapsed_seconds)
        if self.running_since is not None:
            elapsed += _duration(calendar.business_seconds(self.running_since, at))
        return elapsed

    def _reaches(self, due: timedelta, calendar: BusinessCalendar) -> datetime | None:
        # Only while running, and (by the invariant) only while `due` is still ahead of the
        # banked time, so the calendar is asked for more than 0 seconds: the answer is
        # inside business hours or at a closing time.
        if self.running_since is None:
            return None
        left = due - _duration(self.elapsed_seconds)
        return calendar.add_business_seconds(self.running_since, left.total_seconds())

    def _bank(self, at: datetime, calendar: BusinessCalendar) -> SlaClock:
        """Count the time up to `at` in the current state, and move the state's instant to `at`."""
        if self.running_since is not None:
            elapsed = self._elapsed(at, calendar)
            warned_at = self.warned_at
            if warned_at is None and elapsed >= self.warning_after:
                warned_at = self._reaches(self.warning_after, calendar)
            breached_at = self.breached_at
            if breached_at is None and elapsed >= self.target:
                breached_at = self._reaches(self.target, calendar)
            return replace(
                self,
                elapsed_seconds=elapsed.total_seconds(),
                running_since=at,
                warned_at=warned_at,
                breached_at=breached_at,
            )
        if self.paused_since is not None:
            return replace(
                self,
                paused_seconds=self.paused(at),
                paused_business_seconds=self.paused_business(at, calendar),
                paused_since=at,
            )
        return self
