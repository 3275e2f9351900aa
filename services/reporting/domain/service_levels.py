"""Service level management, pure: periods, availability of a business service, performance
against SLA targets, and the improvement actions and audit findings that follow from them
(ISO/IEC 20000-1 8.3.3, 8.7.1, 9.2).

Definitions (the README's "Availability" section says the same for readers):
- agreed service time: the open hours of the service's calendar (its SLA policy's; 24x7 when
  no policy covers it) in the period, up to now for the period in progress;
- downtime: the union of the service's outages (kind `outage`, not withdrawn; an open one runs
  to now) within agreed service time, less what an approved change's planned window covers
  (that part is planned downtime, reported apart); degradations are reported apart too and
  never count as downtime;
- availability: (agreed - downtime) / agreed; None when nothing was agreed;
- outages: the outage records with downtime in the period; MTRS (mean time to restore service)
  = downtime / outages; MTBF (mean time between failures) = (agreed - downtime) / outages;
  both None without an outage;
- an availability target is a percentage in the catalogue (99.5) and a ratio here (0.995).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.reporting.domain.report_data import (
    AvailabilityPoint,
    Period,
    PeriodKind,
    SlaTargetResult,
    period_end,
    period_of,
)
from shared.calendars import BusinessCalendar, CalendarSpec, Interval, first_instant_showing
from shared.errors import invalid_field
from shared.records.record import VersionedRecord
from shared.records.workflow import StateMachine

MAX_PERIODS = 366
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
CLOCK_KINDS = ("response", "resolution")
AVAILABILITY_TARGET = "availability"

# --- periods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodSpan:
    """A period and the instants it runs between, [start, end) in UTC."""

    period: Period
    start: datetime
    end: datetime


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return first_instant_showing(datetime(day.year, day.month, day.day), zone).astimezone(UTC)


def spans(kind: PeriodKind, start: date, count: int, time_zone: str) -> list[PeriodSpan]:
    """`count` consecutive periods from the one holding `start`, cut at local midnight."""
    if not 1 <= count <= MAX_PERIODS:
        raise invalid_field("count", f"from 1 to {MAX_PERIODS}", "query")
    zone = ZoneInfo(time_zone)
    found = []
    period = period_of(kind, start)
    for _ in range(count):
        after = period_end(period)
        found.append(PeriodSpan(period, _midnight(period.start, zone), _midnight(after, zone)))
        period = period_of(kind, after)
    return found


def span_at(kind: PeriodKind, instant: datetime, time_zone: str) -> PeriodSpan:
    """The period of `kind` that holds `instant` in the time zone."""
    local = instant.astimezone(ZoneInfo(time_zone)).date()
    return spans(kind, local, 1, time_zone)[0]


# --- intervals -------------------------------------------------------------------------------


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The intervals merged: sorted, disjoint, empty ones dropped."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Where two merged interval lists overlap."""
    found: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            found.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return found


def subtract(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """What of merged list `a` merged list `b` does not cover (one pass over both)."""
    found: list[Interval] = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        cursor = start
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                found.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            found.append((cursor, end))
    return found


def seconds_of(intervals: Iterable[Interval]) -> float:
    """The total length of disjoint intervals, in seconds."""
    return sum((end - start).total_seconds() for start, end in intervals)


# --- availability ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """An outage or degradation record of one or more services as it now stands."""

    outage_id: str
    kind: Literal["outage", "degradation"]
    start: datetime
    end: datetime | None
    withdrawn: bool = False


@dataclass(frozen=True)
class ServiceTerms:
    """What availability is measured against: the calendar of agreed service time (None: 24x7)
    and the target as a ratio (None: none agreed)."""

    calendar: CalendarSpec | None
    target: float | None


def agreed_intervals(
    calendar: CalendarSpec | None, start: datetime, end: datetime
) -> list[Interval]:
    """Agreed service time in [start, end): the calendar's open hours, or all of it."""
    if end <= start:
        return []
    if calendar is None:
        return [(start, end)]
    return list(BusinessCalendar(calendar).open_intervals(start, end))


def availability_of(
    service: str,
    span: PeriodSpan,
    terms: ServiceTerms,
    outages: Sequence[Outage],
    planned: Sequence[Interval],
    now: datetime,
) -> AvailabilityPoint:
    """The service's availability in the period, as far as it has run by `now`."""
    until = min(span.end, now)
    agreed = agreed_intervals(terms.calendar, span.start, until)
    # Agreed time no approved window covers: where an outage is downtime.
    exposed = subtract(agreed, union(planned))
    exposed_ends = [end for _, end in exposed]
    down: list[Interval] = []
    degraded: list[Interval] = []
    counted = 0
    for outage in outages:
        if outage.withdrawn:
            continue
        window = (max(outage.start, span.start), min(outage.end or until, until))
        if window[1] <= window[0]:
            continue
        if outage.kind == "degradation":
            degraded.append(window)
            continue
        down.append(window)
        first = bisect.bisect_right(exposed_ends, window[0])
        if first < len(exposed) and exposed[first][0] < window[1]:
            counted += 1
    all_down = union(down)
    downtime = seconds_of(intersect(exposed, all_down))
    planned_seconds = max(0.0, seconds_of(intersect(agreed, all_down)) - downtime)
    agreed_seconds = seconds_of(agreed)
    availability = (agreed_seconds - downtime) / agreed_seconds if agreed_seconds > 0 else None
    return AvailabilityPoint(
        service=service,
        period=span.period,
        agreed_seconds=agreed_seconds,
        downtime_seconds=downtime,
        planned_downtime_seconds=planned_seconds,
        degraded_seconds=seconds_of(intersect(agreed, union(degraded))),
        outages=counted,
        availability=availability,
        mtbf_seconds=(agreed_seconds - downtime) / counted if counted else None,
        mtrs_seconds=downtime / counted if counted else None,
        target=terms.target,
        breached=None
        if availability is None or terms.target is None
        else availability < terms.target,
    )


def missed_for_certain(point: AvailabilityPoint, terms: ServiceTerms, span: PeriodSpan) -> bool:
    """Whether the period's availability is below target whatever happens before it ends: the
    downtime so far exceeds what the whole period's agreed time allows."""
    if terms.target is None:
        return False
    whole = seconds_of(agreed_intervals(terms.calendar, span.start, span.end))
    return whole > 0 and point.downtime_seconds > whole * (1 - terms.target)


# --- SLA performance -------------------------------------------------------------------------


def target_name(priority: int, kind: str) -> str:
    """`P1 resolution`: how a target of a policy is named."""
    return f"P{priority} {kind}"


def policy_target_names(priorities: Iterable[str]) -> list[str]:
    """Every target a policy with these priorities has (response and resolution of each)."""
    return [f"{p} {k}" for p in PRIORITIES if p in set(priorities) for k in CLOCK_KINDS]


@dataclass(frozen=True)
class PolicyTerms:
    """A policy's targets and its agreed compliance objective (None: the tenant's default)."""

    name: str
    targets: Sequence[str]
    objective: float | None


def sla_results(
    policies: Sequence[PolicyTerms],
    outcomes: Mapping[tuple[str, str, str], tuple[int, int]],
    span: PeriodSpan,
    default_objective: float,
) -> list[SlaTargetResult]:
    """Performance against every target of every policy in the period: `outcomes` maps
    (policy, target, period label) to (met, breached) clocks stopped in it. A target is missed
    when its compliance is below the objective; a target without clocks is not missed."""
    results = []
    known = {p.name: p for p in policies}
    names = {(p.name, t) for p in policies for t in p.targets}
    names |= {(policy, t) for policy, t, label in outcomes if label == span.period.label}
    for policy, target in sorted(names):
        met, breached = outcomes.get((policy, target, span.period.label), (0, 0))
        terms = known.get(policy)
        objective = terms.objective if terms and terms.objective is not None else default_objective
        compliance = met / (met + breached) if met + breached else None
        results.append(
            SlaTargetResult(
                policy=policy,
                target=target,
                period=span.period,
                met=met,
                breached=breached,
                compliance=compliance,
                objective=objective,
                missed=compliance is not None and compliance < objective,
            )
        )
    return results


# --- improvement actions and audit findings --------------------------------------------------

ActionState = Literal["open", "in_progress", "done", "cancelled"]
FindingState = Literal["open", "in_progress", "closed"]

ACTIONS: StateMachine[ActionState] = StateMachine(
    record="improvement action",
    transitions={
        "open": frozenset({"in_progress", "cancelled"}),
        "in_progress": frozenset({"done", "cancelled"}),
        "done": frozenset(),
        "cancelled": frozenset(),
    },
    requires={("in_progress", "done"): ("outcome",)},
    hints={"outcome": " (what was done and how it turned out)"},
)

FINDINGS: StateMachine[FindingState] = StateMachine(
    record="audit finding",
    transitions={
        "open": frozenset({"in_progress", "closed"}),
        "in_progress": frozenset({"closed"}),
        "closed": frozenset(),
    },
    requires={
        ("open", "closed"): ("corrective_action",),
        ("in_progress", "closed"): ("corrective_action",),
    },
    hints={"corrective_action": " (what was done about the finding)"},
)


@dataclass(frozen=True, kw_only=True)
class ImprovementActionRecord(VersionedRecord):
    """An improvement action (state = its status)."""

    title: str
    source: str
    service: str | None = None
    policy: str | None = None
    target: str | None = None
    period: str | None = None
    finding_id: uuid.UUID | None = None
    owner: str | None = None
    due_date: date | None = None
    outcome: str = ""
    auto_key: str | None = None

    def overdue(self, today: date) -> bool:
        """Past its due date and not closed."""
        return self.due_date is not None and self.due_date < today and self.state in OPEN_ACTION


@dataclass(frozen=True, kw_only=True)
class AuditFindingRecord(VersionedRecord):
    """An internal-audit finding (state = its status)."""

    audit: str
    clause: str
    finding: str
    severity: str
    owner: str | None = None
    corrective_action: str = ""
    due_date: date | None = None


OPEN_ACTION = ("open", "in_progress")
OPEN_FINDING = ("open", "in_progress")


def check_status_details(
    machine: StateMachine[Any], current: str, wanted: str, values: Mapping[str, object]
) -> None:
    """Refuse a status move the machine does not allow, or one missing what it needs (the
    value given with the move, or the one the record already has)."""
    needed = machine.required(current, wanted) if machine.can(current, wanted) else ()
    machine.check(current, wanted, {name: values.get(name) for name in needed})


def auto_key_sla(policy: str, target: str, period: str) -> str:
    """What makes an automatically opened action for a missed SLA target unique."""
    return f"sla|{policy}|{target}|{period}"


def auto_key_availability(service: str, period: str) -> str:
    """What makes an automatically opened action for a missed availability target unique."""
    return f"availability|{service}|{period}"


def refuse_blank(values: Mapping[str, object], names: Iterable[str]) -> None:
    """A 422 naming the first field given as blank text."""
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and not value.strip():
            raise invalid_field(name, "must not be blank")
