"""Maintenance and blackout (freeze) windows of the change schedule: what they cover, when they
occur, and the one way to define, revise and retire them. Pure logic.

- **Kind** (`WindowKind`): a `maintenance` window is when changes to the CIs it covers may run
  (a CI with maintenance windows is changed inside one of them); a `blackout` is when they may
  not (an emergency override with a reason may still schedule into one).
- **Scope** (`WindowScope`): `all` the tenant's CIs, one business `service` (the CIs that support
  it, and the service's own CI), or a set of `cis`.
- **When**: a local wall-clock `start` (no offset), a `duration`, an optional RFC 5545 RRULE
  (`python-dateutil`) and local dates excluded, all read in the window's IANA `time_zone` (taken
  from the named business calendar when one is named). Each occurrence starts at the first
  instant the local clock shows its wall time (`shared.calendars.first_instant_showing`), so a
  weekly 02:00 Europe/Berlin window stays at 02:00 local across the clock changes; a start inside
  a spring-forward gap is the moment of the jump, a repeated hour its first pass. An occurrence
  lasts `duration` of elapsed time.
"""

from __future__ import annotations

import re
import uuid
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from shared.calendars import first_instant_showing
from shared.errors import FieldError, ValidationFailed, invalid_field
from shared.events.catalogue import ChangeWindowDefinedV1, ChangeWindowRetiredV1, EventPayload
from shared.records.record import Changed, VersionedRecord, apply_change, change_value
from shared.records.record import transition as move
from shared.records.workflow import StateMachine

WindowKind = Literal["maintenance", "blackout"]
WindowScope = Literal["all", "service", "cis"]
WINDOW_KINDS: Final[tuple[str, ...]] = get_args(WindowKind)
WINDOW_SCOPES: Final[tuple[str, ...]] = get_args(WindowScope)
Interval = tuple[datetime, datetime]

WINDOW: Final = StateMachine[Literal["active", "retired"]](
    "change window",
    {"active": frozenset({"retired"}), "retired": frozenset()},
    {("active", "retired"): ("reason",)},
)
# Seconds- and minute-level recurrences would make millions of occurrences in a year.
_FREQUENCIES: Final = frozenset({"HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
_FREQ = re.compile(r"(?:^|;)FREQ=([A-Z]+)(?:;|$)")
MAX_DURATION: Final = timedelta(days=31)
# How many occurrences one window yields for one period, at most (an HOURLY rule over a year).
MAX_OCCURRENCES: Final = 20_000
# What the revise endpoint may change.
REVISABLE: Final[tuple[str, ...]] = (
    "name",
    "description",
    "scope",
    "service",
    "ci_ids",
    "start",
    "duration_seconds",
    "rrule",
    "exclusions",
    "time_zone",
    "calendar",
)


@dataclass(frozen=True)
class ChangeWindow(VersionedRecord):
    """A maintenance or blackout window (WIN<number>); state `active` or `retired`."""

    PREFIX: ClassVar[str] = "WIN"

    number: int
    name: str
    kind: str
    scope: str
    description: str = ""
    # The business service's id (scope `service`), the CIs' ids (scope `cis`).
    service: str | None = None
    ci_ids: tuple[str, ...] = ()
    # Local wall-clock time (naive) in `time_zone`.
    start: datetime = datetime(1970, 1, 1)
    duration_seconds: int = 3600
    rrule: str | None = None
    # Local dates on which no occurrence starts.
    exclusions: tuple[date, ...] = ()
    time_zone: str = "UTC"
    calendar: str | None = None
    retire_reason: str | None = None

    @property
    def duration(self) -> timedelta:
        """How long each occurrence lasts (elapsed time)."""
        return timedelta(seconds=self.duration_seconds)

    def covers(self, ci_id: str, services: Collection[str]) -> bool:
        """Whether the window applies to this CI, which supports these business services."""
        if self.scope == "all":
            return True
        if self.scope == "service":
            return self.service is not None and (self.service == ci_id or self.service in services)
        return ci_id in self._covered

    @cached_property
    def _covered(self) -> frozenset[str]:
        # A blackout may name thousands of CIs; a change may involve thousands too.
        return frozenset(self.ci_ids)

    def occurrences(self, start: datetime, end: datetime) -> list[Interval]:
        """The occurrences (UTC) that overlap [start, end), in order."""
        return occurrences(self, start, end)


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA time zone of this name (422 naming `field` otherwise)."""
    if name in {"localtime", "posixrules"} or not name:
        raise invalid_field(field, f"{name!r} depends on the machine; name an IANA time zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_field(field, f"unknown IANA time zone {name!r}") from None


def parse_rrule(text: str, start: datetime) -> rrule:
    """The recurrence an RFC 5545 RRULE value (without the `RRULE:` prefix) describes from the
    local `start`; 422 naming `rrule` when it is not one we evaluate."""
    text = text.strip().upper()
    if text.startswith("RRULE:"):
        text = text[len("RRULE:") :]
    match = _FREQ.search(text)
    if match is None:
        raise invalid_field("rrule", "an RRULE needs FREQ (e.g. FREQ=WEEKLY;BYDAY=SU)")
    if match.group(1) not in _FREQUENCIES:
        raise invalid_field("rrule", f"FREQ must be one of {', '.join(sorted(_FREQUENCIES))}")
    if re.search(r"UNTIL=[0-9T]+Z", text):
        raise invalid_field("rrule", "UNTIL is a local time without Z (the window's zone)")
    if "DTSTART" in text or "\n" in text:
        raise invalid_field("rrule", "one RRULE value; the start is the window's own `start`")
    try:
        rule = rrulestr(text, dtstart=start)
    except (ValueError, TypeError, OverflowError) as error:
        raise invalid_field("rrule", f"not an RFC 5545 RRULE: {error}") from None
    if not isinstance(rule, rrule):
        raise invalid_field("rrule", "one RRULE value")
    return rule


def check(values: Mapping[str, Any]) -> None:
    """Refuse a window whose fields do not fit together (422 naming each field)."""
    errors: list[FieldError] = []
    if values["kind"] not in WINDOW_KINDS:
        errors.append(FieldError("kind", f"must be one of {', '.join(WINDOW_KINDS)}"))
    scope = values["scope"]
    if scope not in WINDOW_SCOPES:
        errors.append(FieldError("scope", f"must be one of {', '.join(WINDOW_SCOPES)}"))
    if scope == "service" and not values.get("service"):
        errors.append(FieldError("service", "a window for a service names the service"))
    if scope != "service" and values.get("service"):
        errors.append(FieldError("service", "only a window of scope `service` names one"))
    if scope == "cis" and not values.get("ci_ids"):
        errors.append(FieldError("ci_ids", "a window for CIs names at least one"))
    if scope != "cis" and values.get("ci_ids"):
        errors.append(FieldError("ci_ids", "only a window of scope `cis` names CIs"))
    if not str(values["name"]).strip():
        errors.append(FieldError("name", "a window needs a name"))
    seconds = values["duration_seconds"]
    if not 60 <= seconds <= MAX_DURATION.total_seconds():
        errors.append(FieldError("duration", "from one minute to 31 days"))
    start = values["start"]
    if start.tzinfo is not None:
        errors.append(FieldError("start", "a local wall-clock time, without an offset"))
    if errors:
        raise ValidationFailed(errors)
    zone(values["time_zone"])
    if values.get("rrule"):
        parse_rrule(values["rrule"], start)


def occurrences(window: ChangeWindow, start: datetime, end: datetime) -> list[Interval]:
    """The window's occurrences (UTC intervals) that overlap [start, end), in order."""
    if end <= start:
        return []
    tz = ZoneInfo(window.time_zone)
    duration = window.duration
    # Local bounds wide enough for any offset (at most 26 h apart) and the duration.
    margin = timedelta(days=2) + duration
    low = start.astimezone(tz).replace(tzinfo=None) - margin
    high = end.astimezone(tz).replace(tzinfo=None) + timedelta(days=2)
    if window.rrule:
        walls: Iterable[datetime] = parse_rrule(window.rrule, window.start).xafter(
            low, count=MAX_OCCURRENCES, inc=True
        )
    else:
        walls = [window.start]
    excluded = set(window.exclusions)
    found: list[Interval] = []
    for wall in walls:
        if wall > high:
            break
        if wall < low or wall.date() in excluded:
            continue
        begins = first_instant_showing(wall, tz)
        finishes = begins + duration
        if begins < end and finishes > start:
            found.append((begins, finishes))
    return found


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of intervals, as disjoint intervals in order (touching ones joined)."""
    merged: list[Interval] = []
    for begins, finishes in sorted(intervals):
        if merged and begins <= merged[-1][1]:
            if finishes > merged[-1][1]:
                merged[-1] = (merged[-1][0], finishes)
        else:
            merged.append((begins, finishes))
    return merged


def contains(merged: Sequence[Interval], start: datetime, end: datetime) -> bool:
    """Whether [start, end) lies inside one of these disjoint, ordered intervals."""
    at = bisect_right(merged, (start, datetime.max.replace(tzinfo=UTC))) - 1
    return at >= 0 and merged[at][0] <= start and end <= merged[at][1]


def overlaps(a: Interval, b: Interval) -> bool:
    """Whether two half-open intervals share an instant."""
    return a[0] < b[1] and b[0] < a[1]


def _defined(window: ChangeWindow, previous: int | None) -> ChangeWindowDefinedV1:
    return ChangeWindowDefinedV1(
        window_id=str(window.id),
        number=window.number,
        name=window.name,
        kind=window.kind,
        scope=window.scope,
        service=window.service,
        ci_ids=list(window.ci_ids),
        start=window.start.isoformat(),
        time_zone=window.time_zone,
        calendar=window.calendar,
        duration_seconds=window.duration_seconds,
        rrule=window.rrule,
        exclusions=list(window.exclusions),
        version=window.version,
        previous_version=previous,
    )


def define_window(
    *,
    tenant_id: str,
    number: int,
    actor: str,
    now: datetime,
    window_id: uuid.UUID | None = None,
    **fields: Any,
) -> tuple[ChangeWindow, list[EventPayload]]:
    """Version 1 of a new window (state `active`), and the event that announces it."""
    fields["ci_ids"] = tuple(dict.fromkeys(fields.get("ci_ids", ())))
    fields["exclusions"] = tuple(sorted(set(fields.get("exclusions", ()))))
    fields.setdefault("description", "")
    check(fields)
    window = ChangeWindow.first(
        id=window_id,
        tenant_id=tenant_id,
        actor=actor,
        now=now,
        state="active",
        number=number,
        **fields,
    )
    return window, [_defined(window, None)]


def revise_window(
    window: ChangeWindow, values: Mapping[str, Any], *, actor: str, now: datetime
) -> Changed[ChangeWindow]:
    """The next version with these values (an active window only; the kind never changes)."""
    if window.state != "active":
        raise ValidationFailed([FieldError("state", "a retired window is not revised")])
    unknown = sorted(set(values) - set(REVISABLE))
    if unknown:
        raise ValidationFailed([FieldError(name, "cannot be revised") for name in unknown])
    values = dict(values)
    if "ci_ids" in values:
        values["ci_ids"] = tuple(dict.fromkeys(values["ci_ids"]))
    if "exclusions" in values:
        values["exclusions"] = tuple(sorted(set(values["exclusions"])))
    # Narrowing the scope drops what the old scope named.
    if values.get("scope", window.scope) != "service":
        values.setdefault("service", None)
    if values.get("scope", window.scope) != "cis":
        values.setdefault("ci_ids", ())
    merged = {name: values.get(name, getattr(window, name)) for name in REVISABLE}
    check({**merged, "kind": window.kind})
    after, changes = apply_change(window, values, actor=actor, now=now)
    events: list[EventPayload] = [_defined(after, window.version)] if changes else []
    return Changed(after, changes, events)


def retire_window(
    window: ChangeWindow, reason: str, *, actor: str, now: datetime
) -> Changed[ChangeWindow]:
    """The retired version (it no longer applies; its history stays)."""
    after, changes = move(
        window,
        WINDOW,
        "retired",
        actor=actor,
        now=now,
        details={"reason": reason.strip() or None},
        values={"retire_reason": reason.strip()},
    )
    event = ChangeWindowRetiredV1(
        window_id=str(window.id),
        number=window.number,
        kind=window.kind,
        reason=reason.strip(),
        version=after.version,
    )
    return Changed(after, changes, [event])


def window_view(window: ChangeWindow) -> dict[str, Any]:
    """The window as the API shows it (JSON-ready)."""
    view = {name: change_value(getattr(window, name)) for name in window.__dataclass_fields__}
    view["start"] = window.start.isoformat()
    view["exclusions"] = [d.isoformat() for d in window.exclusions]
    view["reference"] = window.reference
    return view
