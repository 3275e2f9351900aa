"""The change schedule as an iCalendar feed (RFC 5545, `text/calendar`) that calendar clients
subscribe to.

- Each change with a planned window is a VEVENT (UID, DTSTAMP, DTSTART, DTEND in UTC, SUMMARY,
  STATUS: TENTATIVE until approved, CONFIRMED from `scheduled` on, CANCELLED when cancelled).
- Each window is one VEVENT with its local start in its time zone (`DTSTART;TZID=`), DURATION,
  its RRULE and, for the local dates it excludes, the EXDATEs of the occurrences on them; each
  zone used gets a VTIMEZONE built from the zone's transitions (so the client agrees with us on
  02:00 local across the clock changes).
- Lines end in CRLF and are folded at 75 octets (never inside a UTF-8 character); TEXT values
  escape backslash, semicolon, comma and newlines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.change.domain.change import Change
from services.change.domain.windows import ChangeWindow, parse_rrule

PRODID = "-//ITSM platform//change schedule//EN"
_LINE_OCTETS = 75
_STATUS = {
    "new": "TENTATIVE",
    "assess": "TENTATIVE",
    "authorize": "TENTATIVE",
    "scheduled": "CONFIRMED",
    "implement": "CONFIRMED",
    "review": "CONFIRMED",
    "closed": "CONFIRMED",
    "cancelled": "CANCELLED",
}
# VTIMEZONE components cover the transitions of at most this many years.
_MAX_ZONE_YEARS = 40


def escape(text: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """A content line folded (RFC 5545 3.1): at most 75 octets a line, continuation lines
    starting with a space, never splitting a UTF-8 character; ends in CRLF."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    limit = _LINE_OCTETS
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, _LINE_OCTETS - 1
        current.append(char)
        size += octets
    parts.append("".join(current))
    return "\r\n ".join(parts) + "\r\n"


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(wall: datetime) -> str:
    return wall.strftime("%Y%m%dT%H%M%S")


def _offset(delta: timedelta | None) -> str:
    seconds = int((delta or timedelta()).total_seconds())
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    clock += f"{secs}S" if secs else ""
    return text + ("T" + clock if clock else "") if (days or clock) else "PT0S"


def _transitions(zone: ZoneInfo, first: int, last: int) -> Iterator[datetime]:
    """The instants (UTC) at which the zone's offset changes in these years."""
    day = datetime(first, 1, 1, tzinfo=UTC)
    end = datetime(last + 1, 1, 1, tzinfo=UTC)
    while day < end:
        nxt = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            low, high = int(day.timestamp()), int(nxt.timestamp())
            before = day.astimezone(zone).utcoffset()
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, zone).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            yield datetime.fromtimestamp(high, UTC)
        day = nxt


def vtimezone(name: str, first: int, last: int) -> list[str]:
    """A VTIMEZONE for the zone, with one component per transition in these years (one
    STANDARD component for a zone without any)."""
    zone = ZoneInfo(name)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{name}"]
    found = False
    for instant in _transitions(zone, first, last):
        found = True
        before = (instant - timedelta(seconds=1)).astimezone(zone)
        after = instant.astimezone(zone)
        kind = "DAYLIGHT" if after.dst() else "STANDARD"
        # The local time the transition happens at, on the clock before it.
        wall = (instant + (before.utcoffset() or timedelta())).replace(tzinfo=None)
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{_local(wall)}",
            f"TZOFFSETFROM:{_offset(before.utcoffset())}",
            f"TZOFFSETTO:{_offset(after.utcoffset())}",
            f"TZNAME:{escape(after.tzname() or name)}",
            f"END:{kind}",
        ]
    if not found:
        at = datetime(first, 1, 1, tzinfo=zone)
        lines += [
            "BEGIN:STANDARD",
            f"DTSTART:{_local(datetime(first, 1, 1))}",
            f"TZOFFSETFROM:{_offset(at.utcoffset())}",
            f"TZOFFSETTO:{_offset(at.utcoffset())}",
            f"TZNAME:{escape(at.tzname() or name)}",
            "END:STANDARD",
        ]
    lines.append("END:VTIMEZONE")
    return lines


def _change_event(change: Change, stamp: str, domain: str) -> list[str]:
    assert change.planned_start is not None and change.planned_end is not None
    description = (
        f"{change.type} change in {change.state}"
        + (f"; implementer {change.implementer}" if change.implementer else "")
        + (
            f"; CIs {', '.join(str(ci) for ci in change.affected_cis)}"
            if change.affected_cis
            else ""
        )
    )
    return [
        "BEGIN:VEVENT",
        f"UID:{change.id}@{domain}",
        f"DTSTAMP:{stamp}",
        f"DTSTART:{_utc(change.planned_start)}",
        f"DTEND:{_utc(change.planned_end)}",
        f"SUMMARY:{escape(f'{change.reference} {change.title}')}",
        f"DESCRIPTION:{escape(description)}",
        f"STATUS:{_STATUS.get(change.state, 'TENTATIVE')}",
        f"SEQUENCE:{change.version}",
        f"LAST-MODIFIED:{_utc(change.updated_at)}",
        "CATEGORIES:CHANGE",
        "END:VEVENT",
    ]


def _exdates(window: ChangeWindow) -> list[datetime]:
    """The local starts of the occurrences the window's excluded dates remove."""
    if not window.rrule or not window.exclusions:
        return []
    rule = parse_rrule(window.rrule, window.start)
    found: list[datetime] = []
    for day in window.exclusions:
        midnight = datetime(day.year, day.month, day.day)
        # inc=True includes the next midnight: keep the day's own starts only.
        found += [
            w
            for w in rule.between(midnight, midnight + timedelta(days=1), inc=True)
            if w.date() == day
        ]
    return sorted(found)


def _window_event(window: ChangeWindow, stamp: str, domain: str) -> list[str]:
    tzid = window.time_zone
    label = "Maintenance window" if window.kind == "maintenance" else "Blackout"
    lines = [
        "BEGIN:VEVENT",
        f"UID:{window.id}@{domain}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;TZID={tzid}:{_local(window.start)}",
        f"DURATION:{_duration(window.duration_seconds)}",
        f"SUMMARY:{escape(f'{label}: {window.name} ({window.reference})')}",
        f"DESCRIPTION:{escape(window.description or label)}",
        "STATUS:CONFIRMED",
        # A window blocks nobody's free/busy time.
        "TRANSP:TRANSPARENT",
        f"SEQUENCE:{window.version}",
        f"CATEGORIES:{window.kind.upper()}",
    ]
    if window.rrule:
        rule = window.rrule.strip()
        lines.append(
            f"RRULE:{rule[len('RRULE:') :] if rule.upper().startswith('RRULE:') else rule}"
        )
        excluded = _exdates(window)
        if excluded:
            lines.append(f"EXDATE;TZID={tzid}:{','.join(_local(w) for w in excluded)}")
    lines.append("END:VEVENT")
    return lines


def calendar(
    changes: Iterable[Change],
    windows: Sequence[ChangeWindow],
    *,
    now: datetime,
    until: datetime,
    domain: str = "change.itsm",
    name: str = "Change schedule",
) -> str:
    """The feed: a VCALENDAR with the changes' and the windows' VEVENTs, folded, CRLF."""
    stamp = _utc(now)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape(name)}",
    ]
    zones = sorted({w.time_zone for w in windows})
    for zone in zones:
        first = min(w.start.year for w in windows if w.time_zone == zone)
        last = max(until.year, first)
        first = max(first, last - _MAX_ZONE_YEARS)
        lines += vtimezone(zone, first, last)
    for change in changes:
        if change.planned_start is not None and change.planned_end is not None:
            lines += _change_event(change, stamp, domain)
    for window in windows:
        lines += _window_event(window, stamp, domain)
    lines.append("END:VCALENDAR")
    return "".join(fold(line) for line in lines)
