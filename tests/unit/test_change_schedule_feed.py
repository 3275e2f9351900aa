"""The change schedule's iCalendar feed, read back by a real RFC 5545 parser (`icalendar`)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from services.change.domain.change import open_change
from services.change.domain.windows import define_window
from services.change.entrypoints.icalendar import calendar, escape, fold

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TITLE = "Patch payroll-db; restart app, then verify\\check\nsecond line — ünïcödé " + "x" * 80


def feed() -> tuple[str, uuid.UUID, uuid.UUID]:
    change, _ = open_change(
        tenant_id="t1",
        number=42,
        type="normal",
        title=TITLE,
        description="",
        justification="",
        requester="rita",
        actor="rita",
        now=NOW,
        planned_start=datetime(2026, 3, 28, 22, 0, tzinfo=UTC),
        planned_end=datetime(2026, 3, 29, 3, 0, tzinfo=UTC),
        affected_cis=(uuid.uuid4(),),
        implementer="ivan",
    )
    window, _ = define_window(
        tenant_id="t1",
        number=3,
        actor="mia",
        now=NOW,
        name="Sunday, 02:00; Berlin",
        kind="maintenance",
        scope="all",
        start=datetime(2026, 1, 4, 2, 0),
        duration_seconds=2 * 3600,
        rrule="FREQ=WEEKLY;BYDAY=SU",
        exclusions=(date(2026, 4, 5),),
        time_zone="Europe/Berlin",
    )
    return (
        calendar([change], [window], now=NOW, until=NOW + timedelta(days=183)),
        change.id,
        (window.id),
    )


def test_the_feed_parses_with_a_change_and_a_recurring_window_in_its_zone() -> None:
    text, change_id, window_id = feed()
    parsed = icalendar.Calendar.from_ical(text)
    events = {str(e["UID"]).split("@")[0]: e for e in parsed.walk("VEVENT")}
    change = events[str(change_id)]
    assert change.decoded("DTSTART") == datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert change.decoded("DTEND") == datetime(2026, 3, 29, 3, 0, tzinfo=UTC)
    assert str(change["SUMMARY"]) == f"CHG42 {TITLE}"
    assert str(change["STATUS"]) == "TENTATIVE"
    assert change.decoded("DTSTAMP") == NOW
    window = events[str(window_id)]
    start = window.decoded("DTSTART")
    assert start.replace(tzinfo=None) == datetime(2026, 1, 4, 2, 0)
    assert start.utcoffset() == timedelta(hours=1)
    assert window.decoded("DURATION") == timedelta(hours=2)
    assert window["RRULE"]["FREQ"] == ["WEEKLY"] and window["RRULE"]["BYDAY"] == ["SU"]
    excluded = [d.dt for d in window["EXDATE"].dts]
    assert [e.astimezone(ZoneInfo("Europe/Berlin")) for e in excluded] == [
        datetime(2026, 4, 5, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    ]
    assert str(window["SUMMARY"]) == "Maintenance window: Sunday, 02:00; Berlin (WIN3)"
    zones = list(parsed.walk("VTIMEZONE"))
    assert [str(z["TZID"]) for z in zones] == ["Europe/Berlin"]
    offsets = {(c.name, str(c.decoded("TZOFFSETTO"))) for c in zones[0].subcomponents}
    assert ("DAYLIGHT", "2:00:00") in offsets and ("STANDARD", "1:00:00") in offsets


def test_the_feed_uses_crlf_and_folds_every_line_at_75_octets() -> None:
    text, _, _ = feed()
    raw = text.encode()
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")[:-1]
    assert max(len(line) for line in lines) <= 75
    assert any(line.startswith(b" ") for line in lines), "the long title was folded"
    for line in lines:
        line.decode()  # never split inside a UTF-8 character


def test_folding_never_splits_a_multibyte_character_and_unfolds_to_the_line() -> None:
    line = "SUMMARY:" + "é" * 100 + "漢" * 30
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "").removesuffix("\r\n") == line


def test_text_escaping_covers_backslash_semicolon_comma_and_newline() -> None:
    assert escape("a\\b;c,d\ne") == "a\\\\b\\;c\\,d\\ne"
