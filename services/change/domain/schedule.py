"""Conflict rules of the change schedule and the next free slot. Pure logic: the application
gathers what surrounds a planned window (other changes, windows, the CMDB neighbourhood, open
major incidents) and asks this module what conflicts.

For a planned window [start, end) on a set of CIs, every conflict is listed, and each names
every CI of the planned work it involves (never just the first):

- `change`: another change (not cancelled or closed) whose window overlaps, on the same CI or
  on a CI within the walk's hops up or downstream of it;
- `implementer`: another overlapping change by the same implementer;
- `blackout`: a blackout occurrence overlapping the window that covers any of the CIs (one
  conflict per blackout, listing each CI it covers);
- `maintenance_window`: CIs that have maintenance windows, none of which contains the whole
  planned window (per CI: a CI without maintenance windows is never outside them; CIs with the
  same windows are listed together);
- `major_incident`: an open major incident on one of the CIs or on a business service one of
  them supports.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

from services.change.domain.windows import ChangeWindow, Interval, contains, merge, overlaps

ConflictKind = Literal["change", "maintenance_window", "blackout", "implementer", "major_incident"]
CONFLICT_KINDS: Final[tuple[str, ...]] = get_args(ConflictKind)
# States whose changes no longer hold a place in the schedule.
FINISHED_STATES: Final[frozenset[str]] = frozenset({"cancelled", "closed"})
SEARCH_HORIZON: Final = timedelta(days=90)
SLOT_STEP: Final = timedelta(minutes=15)


@dataclass(frozen=True)
class ScheduleConflict:
    """One conflict: its kind, why, every CI of the planned work it involves, and the other
    change, window or incident (`other_id`, with its reference where it has one)."""

    kind: str
    detail: str
    ci_ids: tuple[str, ...]
    other_id: str | None = None
    other_reference: str | None = None


@dataclass(frozen=True)
class PlannedWork:
    """A window under check: a change's planned one, or a hypothetical one."""

    start: datetime
    end: datetime
    ci_ids: tuple[str, ...]
    implementer: str | None = None
    # The change's own business services (a change may name a service and no CI).
    services: tuple[str, ...] = ()
    change_id: uuid.UUID | None = None


@dataclass(frozen=True)
class BookedChange:
    """Another change holding a place in the schedule."""

    id: uuid.UUID
    number: int
    state: str
    start: datetime
    end: datetime
    ci_ids: tuple[str, ...]
    implementer: str | None


@dataclass(frozen=True)
class OpenMajorIncident:
    """An open major incident, on a CI and/or business services."""

    id: str
    title: str
    services: tuple[str, ...]
    ci_id: str | None


@dataclass(frozen=True)
class Surroundings:
    """What surrounds a planned window: each CI's business services, each CI's neighbourhood
    (`near[ci]`: the CIs within the hops, with their distance; the CI itself at 0), the changes
    overlapping the window, the active windows with their occurrences overlapping it, and the
    open major incidents."""

    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    near: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    changes: Sequence[BookedChange] = ()
    windows: Sequence[tuple[ChangeWindow, Sequence[Interval]]] = ()
    major_incidents: Sequence[OpenMajorIncident] = ()


def _ref(number: int) -> str:
    return f"CHG{number}"


def detect(planned: PlannedWork, around: Surroundings) -> list[ScheduleConflict]:
    """Every conflict of the planned window (see the module docstring), by kind then other."""
    window = (planned.start, planned.end)
    found: list[ScheduleConflict] = []
    others = [
        other
        for other in around.changes
        if other.id != planned.change_id
        and other.state not in FINISHED_STATES
        and overlaps(window, (other.start, other.end))
    ]
    # For each CI a booked change is on, the changes on it: each planned CI then looks at its
    # own neighbourhood only (thousands of CIs against a few changes, or the reverse).
    on_ci: dict[str, list[int]] = {}
    for at, other in enumerate(others):
        for ci in other.ci_ids:
            on_ci.setdefault(ci, []).append(at)
    # change index -> {planned CI: its distance to the change's nearest CI}
    reached: dict[int, dict[str, int]] = {}
    for ci in planned.ci_ids:
        for neighbour, hops in around.near.get(ci, {ci: 0}).items():
            for at in on_ci.get(neighbour, ()):
                distances = reached.setdefault(at, {})
                if hops < distances.get(ci, hops + 1):
                    distances[ci] = hops
    for at, other in enumerate(others):
        distances = reached.get(at, {})
        involved = tuple(ci for ci in planned.ci_ids if ci in distances)
        if involved:
            closest = min(distances.values())
            where = "on the same CI" if closest == 0 else f"within {closest} hop(s)"
            found.append(
                ScheduleConflict(
                    "change",
                    f"{_ref(other.number)} ({other.state}) {where} runs"
                    f" {other.start.isoformat()} to {other.end.isoformat()}",
                    involved,
                    str(other.id),
                    _ref(other.number),
                )
            )
        if planned.implementer and other.implementer == planned.implementer:
            found.append(
                ScheduleConflict(
                    "implementer",
                    f"{planned.implementer} implements {_ref(other.number)} at the same time",
                    planned.ci_ids,
                    str(other.id),
                    _ref(other.number),
                )
            )
    outside: dict[tuple[int, ...], list[str]] = {}
    maintenance = [(w, occ) for w, occ in around.windows if w.kind == "maintenance"]
    # CIs with the same maintenance windows share the answer: work it out once per set.
    inside: dict[tuple[int, ...], bool] = {}
    for ci in planned.ci_ids:
        services = around.services.get(ci, ())
        key = tuple(i for i, (w, _) in enumerate(maintenance) if w.covers(ci, services))
        if not key:
            continue
        if key not in inside:
            inside[key] = contains(merge(i for at in key for i in maintenance[at][1]), *window)
        if not inside[key]:
            outside.setdefault(key, []).append(ci)
    for key, cis in outside.items():
        mine = [maintenance[at][0] for at in key]
        names = ", ".join(f"{w.reference} {w.name!r}" for w in mine)
        found.append(
            ScheduleConflict(
                "maintenance_window",
                f"outside the maintenance window(s) {names} of these CIs",
                tuple(cis),
                str(mine[0].id) if len(mine) == 1 else None,
                mine[0].reference if len(mine) == 1 else None,
            )
        )
    for blackout, occurrences in around.windows:
        if blackout.kind != "blackout":
            continue
        hits = [i for i in occurrences if overlaps(window, i)]
        covered = tuple(
            ci for ci in planned.ci_ids if blackout.covers(ci, around.services.get(ci, ()))
        )
        # A freeze of everything, or of a service the change itself names, covers the change
        # even where none of its CIs (it may have none) is covered.
        whole = blackout.scope == "all" or (
            blackout.scope == "service" and blackout.service in planned.services
        )
        if hits and (covered or whole):
            what = f"{len(covered)} CI(s)" if covered else "the change"
            found.append(
                ScheduleConflict(
                    "blackout",
                    f"blackout {blackout.reference} {blackout.name!r} from"
                    f" {hits[0][0].isoformat()} to {hits[-1][1].isoformat()} covers {what}",
                    covered,
                    str(blackout.id),
                    blackout.reference,
                )
            )
    for incident in around.major_incidents:
        involved = tuple(
            ci
            for ci in planned.ci_ids
            if ci == incident.ci_id
            or set(incident.services) & set(around.services.get(ci, ()))
            or ci in incident.services
        )
        if involved or set(incident.services) & set(planned.services):
            found.append(
                ScheduleConflict(
                    "major_incident",
                    f"open major incident {incident.title!r} on an affected service",
                    involved,
                    incident.id,
                    None,
                )
            )
    order = {kind: i for i, kind in enumerate(CONFLICT_KINDS)}
    return sorted(
        found, key=lambda c: (order[c.kind], c.other_reference or "", c.other_id or "", c.ci_ids)
    )


def blackouts(conflicts: Sequence[ScheduleConflict]) -> list[ScheduleConflict]:
    """The blackout conflicts among these."""
    return [c for c in conflicts if c.kind == "blackout"]


def fingerprint(conflicts: Sequence[ScheduleConflict]) -> str:
    """SHA-256 of the conflicts as canonical JSON: equal sets, equal fingerprints."""
    text = json.dumps([asdict(c) for c in conflicts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _ceil(instant: datetime, step: timedelta) -> datetime:
    """The first instant of the step's grid (from the Unix epoch, UTC) at or after `instant`."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - instant) // step)
    return epoch + steps * step


def next_free_slot(
    *,
    after: datetime,
    duration: timedelta,
    busy: Sequence[Interval],
    allowed: Sequence[Sequence[Interval]],
    horizon: timedelta = SEARCH_HORIZON,
    step: timedelta = SLOT_STEP,
) -> Interval | None:
    """The first [t, t + duration), t on the step's grid at or after `after` and ending within
    the horizon, that overlaps nothing `busy` and lies inside one interval of each of `allowed`
    (per CI with maintenance windows: their occurrences); None when there is none."""
    blocked = merge(busy)
    inside = [merge(each) for each in allowed]
    limit = after + horizon
    candidate = _ceil(after, step)
    far = datetime.max.replace(tzinfo=UTC)
    while candidate + duration <= limit:
        finish = candidate + duration
        # The busy interval starting last before the candidate's end: merged intervals are
        # disjoint, so an earlier one ends before it starts, and this one decides.
        at = bisect_left(blocked, (finish,)) - 1
        if at >= 0 and blocked[at][1] > candidate and blocked[at][0] < finish:
            # Every grid point before this interval's end overlaps it too.
            candidate = _ceil(blocked[at][1], step)
            continue
        moved = False
        for intervals in inside:
            if contains(intervals, candidate, finish):
                continue
            # No start before the next interval's start fits: the one holding the candidate
            # (if any) ends too soon for every later start inside it.
            nxt = bisect_right(intervals, (candidate, far))
            if nxt >= len(intervals):
                return None
            candidate = _ceil(intervals[nxt][0], step)
            moved = True
            break
        if not moved:
            return candidate, finish
    return None
