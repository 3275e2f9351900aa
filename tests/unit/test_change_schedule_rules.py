"""Conflict rules of the change schedule and the next free slot (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.change.domain.schedule import (
    BookedChange,
    OpenMajorIncident,
    PlannedWork,
    Surroundings,
    detect,
    fingerprint,
    next_free_slot,
)
from services.change.domain.windows import ChangeWindow, Interval, define_window

T0 = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
WORK = PlannedWork(T0, T0 + timedelta(hours=2), ("db", "app"), implementer="ivan")


def make_window(number: int = 1, **fields: object) -> ChangeWindow:
    values: dict[str, object] = {
        "name": f"window {number}",
        "kind": "blackout",
        "scope": "all",
        "start": datetime(2026, 6, 1, 0, 0),
        "duration_seconds": 7 * 86400,
        "time_zone": "UTC",
        **fields,
    }
    made, _ = define_window(tenant_id="t1", number=number, actor="mia", now=T0, **values)
    return made


def around(*windows: ChangeWindow, **fields: object) -> Surroundings:
    occurring = [(w, w.occurrences(WORK.start, WORK.end)) for w in windows]
    return Surroundings(windows=occurring, **fields)  # type: ignore[arg-type]


def booked(number: int, cis: tuple[str, ...], implementer: str | None = None) -> BookedChange:
    return BookedChange(
        uuid.uuid4(),
        number,
        "scheduled",
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=3),
        cis,
        implementer,
    )


def test_a_blackout_hitting_eighty_cis_lists_every_one_of_them() -> None:
    cis = tuple(f"ci-{i:03d}" for i in range(100))
    covered = cis[10:90]
    planned = PlannedWork(WORK.start, WORK.end, cis)
    freeze = make_window(scope="cis", ci_ids=list(covered))
    found = detect(planned, around(freeze))
    assert [c.kind for c in found] == ["blackout"]
    assert found[0].ci_ids == covered and len(found[0].ci_ids) == 80
    assert found[0].other_id == str(freeze.id) and found[0].other_reference == "WIN1"
    assert "80 CI(s)" in found[0].detail


def test_a_blackout_of_a_business_service_covers_the_cis_that_support_it() -> None:
    freeze = make_window(scope="service", service="payroll")
    services = {"db": ("payroll",), "app": ("hr",)}
    found = detect(WORK, around(freeze, services=services))
    assert [(c.kind, c.ci_ids) for c in found] == [("blackout", ("db",))]


def test_a_change_naming_a_frozen_service_and_no_ci_is_covered_by_its_blackout() -> None:
    planned = PlannedWork(WORK.start, WORK.end, (), services=("payroll",))
    freeze = make_window(scope="service", service="payroll")
    other = make_window(2, scope="service", service="hr")
    found = detect(planned, around(freeze, other))
    assert [(c.kind, c.ci_ids, c.other_reference) for c in found] == [("blackout", (), "WIN1")]
    assert "covers the change" in found[0].detail


def test_a_freeze_of_everything_covers_a_change_without_cis() -> None:
    planned = PlannedWork(WORK.start, WORK.end, ())
    found = detect(planned, around(make_window(scope="all")))
    assert [(c.kind, c.ci_ids) for c in found] == [("blackout", ())]


def test_an_open_major_incident_on_a_service_the_change_names_conflicts_without_cis() -> None:
    incident = OpenMajorIncident("inc-1", "Payroll down", ("payroll",), None)
    planned = PlannedWork(WORK.start, WORK.end, (), services=("payroll",))
    found = detect(planned, Surroundings(major_incidents=[incident]))
    assert [(c.kind, c.ci_ids, c.other_id) for c in found] == [("major_incident", (), "inc-1")]


def test_a_blackout_that_does_not_overlap_the_window_is_no_conflict() -> None:
    later = make_window(start=datetime(2026, 6, 2, 0, 30), duration_seconds=3600)
    assert detect(WORK, around(later)) == []


def test_per_ci_maintenance_windows_are_honoured_not_just_global_ones() -> None:
    # db may be changed on Monday nights 22:00-02:00 (the work fits); app only on Sundays.
    monday = make_window(
        1,
        kind="maintenance",
        scope="cis",
        ci_ids=["db"],
        start=datetime(2026, 6, 1, 22, 0),
        duration_seconds=4 * 3600,
        rrule="FREQ=WEEKLY",
    )
    sunday = make_window(
        2,
        kind="maintenance",
        scope="cis",
        ci_ids=["app", "web"],
        start=datetime(2026, 5, 31, 22, 0),
        duration_seconds=4 * 3600,
        rrule="FREQ=WEEKLY",
    )
    found = detect(WORK, around(monday, sunday))
    assert [(c.kind, c.ci_ids, c.other_id, c.other_reference) for c in found] == [
        ("maintenance_window", ("app",), str(sunday.id), "WIN2")
    ]


def test_cis_outside_the_same_maintenance_windows_are_listed_together_in_one_conflict() -> None:
    weekends = make_window(
        kind="maintenance",
        start=datetime(2026, 6, 6, 0, 0),
        duration_seconds=2 * 86400,
        rrule="FREQ=WEEKLY",
    )
    found = detect(WORK, around(weekends))
    assert [(c.kind, c.ci_ids) for c in found] == [("maintenance_window", ("db", "app"))]


def test_a_ci_without_maintenance_windows_is_never_outside_them() -> None:
    elsewhere = make_window(kind="maintenance", scope="cis", ci_ids=["other"])
    assert detect(WORK, around(elsewhere)) == []


def test_another_change_on_a_neighbour_within_the_hops_conflicts_naming_each_ci() -> None:
    near = {"db": {"db": 0, "disk": 1}, "app": {"app": 0, "db": 1}}
    other = booked(12, ("db",))
    found = detect(WORK, Surroundings(near=near, changes=[other]))
    assert [(c.kind, c.ci_ids, c.other_reference) for c in found] == [
        ("change", ("db", "app"), "CHG12")
    ]
    assert "on the same CI" in found[0].detail
    far = detect(WORK, Surroundings(near=near, changes=[booked(13, ("disk",))]))
    assert [(c.ci_ids, "within 1 hop(s)" in c.detail) for c in far] == [(("db",), True)]


def test_cancelled_and_closed_changes_and_the_change_itself_hold_no_place() -> None:
    mine = uuid.uuid4()
    planned = PlannedWork(WORK.start, WORK.end, ("db",), change_id=mine)
    others = [
        BookedChange(mine, 1, "scheduled", WORK.start, WORK.end, ("db",), None),
        BookedChange(uuid.uuid4(), 2, "cancelled", WORK.start, WORK.end, ("db",), None),
        BookedChange(uuid.uuid4(), 3, "closed", WORK.start, WORK.end, ("db",), None),
    ]
    assert detect(planned, Surroundings(changes=others)) == []


def test_the_implementer_booked_elsewhere_at_the_same_time_conflicts() -> None:
    found = detect(WORK, Surroundings(changes=[booked(20, ("mail",), implementer="ivan")]))
    assert [(c.kind, c.other_reference) for c in found] == [("implementer", "CHG20")]


def test_an_open_major_incident_on_an_affected_service_conflicts() -> None:
    incident = OpenMajorIncident("inc-1", "Payroll down", ("payroll",), None)
    services = {"db": ("payroll",), "app": ("payroll", "hr")}
    found = detect(WORK, Surroundings(services=services, major_incidents=[incident]))
    assert [(c.kind, c.ci_ids, c.other_id) for c in found] == [
        ("major_incident", ("db", "app"), "inc-1")
    ]


def test_the_fingerprint_tells_conflict_sets_apart_and_equal_sets_together() -> None:
    a = detect(WORK, around(make_window()))
    b = detect(WORK, around(make_window()))
    assert fingerprint(a) != fingerprint([])
    assert fingerprint(a) != fingerprint(b)  # another blackout (its id)
    assert fingerprint(a) == fingerprint(list(a))


# --- next free slot ------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
spans = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 60)).map(
        lambda p: (BASE + p[0] * STEP, BASE + (p[0] + p[1]) * STEP)
    ),
    max_size=12,
)


def free(slot: Interval, busy: list[Interval], allowed: list[list[Interval]]) -> bool:
    """No busy interval overlaps the slot, and each quarter hour of it lies in some interval of
    each allowed list (occurrences that overlap or touch make one stretch)."""
    clear = all(not (slot[0] < b[1] and b[0] < slot[1]) for b in busy)
    quarters = []
    t = slot[0]
    while t < slot[1]:
        quarters.append(t)
        t += STEP
    inside = all(
        all(any(a[0] <= q and q + STEP <= a[1] for a in each) for q in quarters) for each in allowed
    )
    return clear and inside


@settings(max_examples=300, deadline=None)
@given(
    busy=spans,
    allowed=st.lists(spans.filter(bool), max_size=3),
    after_minutes=st.integers(0, 3000),
    steps=st.integers(1, 16),
)
def test_the_next_free_slot_is_free_and_no_earlier_slot_of_the_step_is(
    busy: list[Interval], allowed: list[list[Interval]], after_minutes: int, steps: int
) -> None:
    after = BASE + timedelta(minutes=after_minutes)
    duration = steps * STEP
    horizon = timedelta(days=6)
    slot = next_free_slot(
        after=after, duration=duration, busy=busy, allowed=allowed, horizon=horizon
    )
    first = BASE + -(-(after - BASE) // STEP) * STEP
    candidates = []
    t = first
    while t + duration <= after + horizon:
        candidates.append(t)
        t += STEP
    expected = next((c for c in candidates if free((c, c + duration), busy, allowed)), None)
    assert (slot[0] if slot else None) == expected
    if slot is not None:
        assert slot[1] - slot[0] == duration and free(slot, busy, allowed)
