"""Evidence records per ISO/IEC 20000-1 clause, built from the tenant's events alone.

The reporting service reads events, never another service's tables, so each clause's records
are what the events of the period say. A clause file has one row per event of the clause's
kinds, in log order, with fixed columns: the common ones (`COMMON_HEAD`, the clause's own,
`COMMON_TAIL`), the clause's own columns taken from the event or, when it does not carry them,
from the record's earlier events in the period (a transition carries no title; the row shows
the title the record had). 8.7.1 is the exception: one row per major incident (an outage).

Event families are matched by type prefix, so events a service adds later (the change service's
approvals, risk, releases and deployments) flow into their clause without a format change: a
clause with no events yet is its header alone, and its columns never depend on the events.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class LoggedEvent:
    """One event of the tenant's log as the clause builders see it."""

    leaf_index: int
    event_id: str
    type: str
    subject: str
    version: int
    time: datetime
    actor: str
    data: Mapping[str, Any]


COMMON_HEAD = ("record_id", "event_type", "version", "time", "actor")
COMMON_TAIL = ("details", "leaf_index", "event_id")

# How a clause column reads its value: from the event, or the record's earlier events.
Lookup = Callable[[LoggedEvent, Mapping[str, Any]], Any]


def _field(*names: str) -> Lookup:
    """The first of `names` the event's data has, else the record's last known value."""

    def lookup(event: LoggedEvent, known: Mapping[str, Any]) -> Any:
        for name in names:
            if event.data.get(name) is not None:
                return event.data[name]
        for name in names:
            if known.get(name) is not None:
                return known[name]
        return None

    return lookup


def _nested(outer: str, *names: str) -> Lookup:
    """A field of a nested object of the data (a CI event's `ci`, an SLA event's `clock`)."""

    def lookup(event: LoggedEvent, known: Mapping[str, Any]) -> Any:
        inner = event.data.get(outer)
        source = inner if isinstance(inner, Mapping) else known.get(outer)
        if not isinstance(source, Mapping):
            return None
        for name in names:
            if source.get(name) is not None:
                return source[name]
        return None

    return lookup


def _state(event: LoggedEvent, known: Mapping[str, Any]) -> Any:
    return _field("to_state", "state")(event, known)


def _sla_result(event: LoggedEvent, known: Mapping[str, Any]) -> Any:
    if event.type.startswith("itsm.incident.sla.warning_reached"):
        return "warning"
    if event.type.startswith("itsm.incident.sla.breached"):
        return "breached"
    if event.type.startswith("itsm.incident.sla.clock_stopped"):
        return event.data.get("result")
    return None


def _sla_policy(event: LoggedEvent, known: Mapping[str, Any]) -> Any:
    if event.type.startswith("itsm.config.sla_policy."):
        return event.data.get("name", event.subject)
    return _nested("clock", "policy")(event, known)


def _is_release_or_deployment(event_type: str) -> bool:
    return event_type.startswith("itsm.change.") and (
        "release" in event_type or "deploy" in event_type
    )


@dataclass(frozen=True)
class Clause:
    """One clause's evidence file: its name, which events feed it, its own columns."""

    clause: str
    name: str
    title: str
    matches: Callable[[str], bool]
    columns: tuple[tuple[str, Lookup, str], ...]  # (column, lookup, description)

    @property
    def file_stem(self) -> str:
        """`clauses/<stem>.csv` and `.json`."""
        return f"{self.clause}-{self.name}"

    @property
    def header(self) -> tuple[str, ...]:
        """The file's columns, fixed."""
        return COMMON_HEAD + tuple(c for c, _, _ in self.columns) + COMMON_TAIL


CLAUSES: tuple[Clause, ...] = (
    Clause(
        "8.2.6",
        "configuration-items",
        "CI register: every version of every CI, with the change that authorised it",
        lambda t: t.startswith("itsm.config.ci."),
        (
            ("ci_class", _nested("ci", "ci_class"), "the CI's class"),
            ("name", _nested("ci", "name"), "the CI's name"),
            ("status", _nested("ci", "status"), "the CI's status after the event"),
            ("ci_version", _nested("ci", "version"), "the CI's own version number"),
            (
                "change_id",
                _field("change_id", "change_ref"),
                "the change that authorised this version, when the event names one",
            ),
        ),
    ),
    Clause(
        "8.3.3",
        "service-levels",
        "SLA register (policies as defined) and results (warnings, breaches, clocks stopped)",
        lambda t: t.startswith(("itsm.config.sla_policy.", "itsm.incident.sla.")),
        (
            ("policy", _sla_policy, "the SLA policy"),
            ("measured_record", _nested("clock", "record_id"), "the incident or request timed"),
            ("clock", _nested("clock", "kind"), "which clock (response, resolution, ...)"),
            ("priority", _nested("clock", "priority"), "the priority the target applies to"),
            ("target_seconds", _nested("clock", "target_seconds"), "the target"),
            ("result", _sla_result, "warning, breached or met (empty for a policy row)"),
            ("due_at", _field("due_at"), "when the warning or breach was due"),
            ("elapsed_seconds", _field("elapsed_seconds"), "business seconds counted"),
        ),
    ),
    Clause(
        "8.5.1",
        "changes",
        "Changes with their approvals, risk and reviews (every itsm.change.* event but releases"
        " and deployments)",
        lambda t: t.startswith("itsm.change.") and not _is_release_or_deployment(t),
        (
            ("number", _field("number"), "the change's number"),
            ("title", _field("title"), "its title"),
            ("change_type", _field("type", "change_type"), "standard, normal or emergency"),
            ("state", _state, "its state after the event"),
            ("risk", _field("risk", "risk_level", "level"), "the assessed risk, when assessed"),
            ("approver", _field("approver"), "who decided, for an approval"),
            ("decision", _field("decision"), "the approval's decision"),
            ("outcome", _field("outcome"), "the implementation's outcome or review"),
        ),
    ),
    Clause(
        "8.5.3",
        "releases-and-deployments",
        "Releases and deployments (itsm.change.* events naming a release or a deployment)",
        lambda t: _is_release_or_deployment(t),
        (
            ("title", _field("title", "name"), "the release's title or name"),
            ("change_id", _field("change_id"), "the change it implements"),
            ("environment", _field("environment"), "where it was deployed"),
            ("state", _state, "its state after the event"),
            (
                "outcome",
                _field("outcome", "result", "status", "decision"),
                "the deployment's result: the gate's decision, then the status it reported",
            ),
        ),
    ),
    Clause(
        "8.6.1",
        "incidents",
        "Incidents with the time of every state (one row per event; `state` and `time` give"
        " when each state was entered)",
        lambda t: (
            t.startswith("itsm.incident.")
            and not t.startswith(
                ("itsm.incident.problem.", "itsm.incident.request.", "itsm.incident.sla.")
            )
            and not t.startswith("itsm.incident.settings_changed")
        ),
        (
            ("number", _field("number"), "the incident's number"),
            ("title", _field("title"), "its title"),
            ("priority", _field("priority"), "its priority after the event"),
            ("major", _field("major"), "whether it is a major incident"),
            ("from_state", _field("from_state"), "the state it left"),
            ("state", _state, "the state it is in after the event"),
        ),
    ),
    Clause(
        "8.6.2",
        "service-requests",
        "Service requests with their approvals",
        lambda t: t.startswith("itsm.incident.request."),
        (
            ("number", _field("number"), "the request's number"),
            ("title", _field("title"), "its title"),
            ("requester", _field("requester"), "who asked"),
            ("priority", _field("priority"), "its priority"),
            ("state", _state, "its state after the event"),
            ("approver", _field("approver"), "who decided, for an approval"),
            ("decision", _field("decision"), "the approval's decision"),
        ),
    ),
    Clause(
        "8.6.3",
        "problems",
        "Problems and known errors with their links to incidents and changes",
        lambda t: t.startswith("itsm.incident.problem."),
        (
            ("number", _field("number"), "the problem's number"),
            ("title", _field("title"), "its title"),
            ("state", _state, "its state after the event"),
            ("known_error_id", _field("known_error_id"), "the known error published"),
            ("incident_id", _field("incident_id"), "the incident linked by the event"),
            ("change_request_id", _field("request_id"), "the change requested for it"),
            ("root_cause", _field("root_cause"), "the root cause found"),
        ),
    ),
)

AVAILABILITY = "8.7.1"
AVAILABILITY_STEM = "8.7.1-availability"
# One row per outage: a major incident, from its declaration to its resolution.
AVAILABILITY_HEADER = (
    "record_id",
    "title",
    "services",
    "ci_id",
    "outage_start",
    "outage_end",
    "duration_seconds",
    "state",
    "leaf_indexes",
)
AVAILABILITY_DESCRIPTIONS = {
    "record_id": "the major incident",
    "title": "its title",
    "services": "the business services it affects (JSON list)",
    "ci_id": "the CI it concerns",
    "outage_start": "when it was declared major (or created as major)",
    "outage_end": "when it was resolved (or cancelled); empty while open",
    "duration_seconds": "outage_end - outage_start",
    "state": "its last state",
    "leaf_indexes": "the log indexes of the events this row is built from (JSON list)",
}

CLAUSE_IDS: tuple[str, ...] = (*(c.clause for c in CLAUSES), AVAILABILITY)
COMMON_DESCRIPTIONS = {
    "record_id": "the record (the events' subject)",
    "event_type": "the event's type",
    "version": "the record's version after the event",
    "time": "when it happened (ISO 8601)",
    "actor": "who did it",
    "details": "the event's data in full (JSON)",
    "leaf_index": "the event's index in the tenant's log (entries.jsonl)",
    "event_id": "the event's id",
}


def clause_of(clause_id: str) -> Clause | None:
    """The per-event clause with that number; None for 8.7.1 (or an unknown one)."""
    return next((c for c in CLAUSES if c.clause == clause_id), None)


def stem_of(clause_id: str) -> str:
    """The file stem of a clause's records."""
    found = clause_of(clause_id)
    return AVAILABILITY_STEM if found is None else found.file_stem


def header_of(clause_id: str) -> tuple[str, ...]:
    """The fixed columns of a clause's file."""
    found = clause_of(clause_id)
    return AVAILABILITY_HEADER if found is None else found.header


def _remember(known: dict[str, Any], data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        if name == "changes" and isinstance(value, Mapping):
            for changed, change in value.items():
                if isinstance(change, Mapping) and "to" in change:
                    known[changed] = change["to"]
        else:
            known[name] = value
    if "to_state" in data:
        known["state"] = data["to_state"]


def rows_of(clause: Clause, events: Iterable[LoggedEvent]) -> list[Row]:
    """A clause's rows from the period's events (in log order)."""
    known: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for event in events:
        if not clause.matches(event.type):
            continue
        record = known.setdefault(event.subject, {})
        row: Row = {
            "record_id": event.subject,
            "event_type": event.type,
            "version": event.version,
            "time": event.time.isoformat(),
            "actor": event.actor,
        }
        for column, lookup, _ in clause.columns:
            row[column] = lookup(event, record)
        row["details"] = dict(event.data)
        row["leaf_index"] = event.leaf_index
        row["event_id"] = event.event_id
        rows.append(row)
        _remember(record, event.data)
    return rows


def _ends_outage(event: LoggedEvent) -> bool:
    return event.type.startswith("itsm.incident.transitioned") and event.data.get("to_state") in (
        "resolved",
        "closed",
        "cancelled",
    )


def availability_rows(events: Iterable[LoggedEvent]) -> list[Row]:
    """8.7.1: one row per major incident of the period (declared major, or created major)."""
    outages: dict[str, Row] = {}
    titles: dict[str, Any] = {}
    for event in events:
        if not event.type.startswith("itsm.incident.") or event.type.startswith(
            ("itsm.incident.problem.", "itsm.incident.request.", "itsm.incident.sla.")
        ):
            continue
        if event.data.get("title") is not None:
            titles[event.subject] = event.data["title"]
        declared = event.type.startswith("itsm.incident.major_declared") or (
            event.type.startswith("itsm.incident.created") and event.data.get("major") is True
        )
        row = outages.get(event.subject)
        if declared and row is None:
            row = outages[event.subject] = {
                "record_id": event.subject,
                "title": titles.get(event.subject),
                "services": list(event.data.get("services") or []),
                "ci_id": event.data.get("ci_id"),
                "outage_start": event.time.isoformat(),
                "outage_end": None,
                "duration_seconds": None,
                "state": event.data.get("state", "new"),
                "leaf_indexes": [],
                "_start": event.time,
            }
        if row is None:
            continue
        row["leaf_indexes"].append(event.leaf_index)
        if event.data.get("to_state") is not None:
            row["state"] = event.data["to_state"]
        if _ends_outage(event) and row["outage_end"] is None:
            row["outage_end"] = event.time.isoformat()
            row["duration_seconds"] = (event.time - row["_start"]).total_seconds()
    for row in outages.values():
        del row["_start"]
    return list(outages.values())


def records_of(clause_id: str, events: Sequence[LoggedEvent]) -> list[Row]:
    """A clause's rows from the period's events."""
    found = clause_of(clause_id)
    return availability_rows(events) if found is None else rows_of(found, events)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def to_csv(header: Sequence[str], rows: Iterable[Row]) -> bytes:
    """RFC 4180 CSV (UTF-8, CRLF) with the header first; nested values as JSON text."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in header])
    return out.getvalue().encode("utf-8")


def to_json(clause_id: str, header: Sequence[str], rows: Iterable[Row]) -> bytes:
    """`{"clause", "columns", "records": [{column: value}]}`, every column in every record,
    one record a line (compact lines: the standard library's C encoder writes them; an
    indented document goes through its pure-Python one, minutes for a million records)."""
    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
    head = encode({"clause": clause_id, "columns": list(header)})
    records = ",\n".join(encode({column: row.get(column) for column in header}) for row in rows)
    tail = "\n]}\n" if records else "]}\n"
    return (head[:-1] + ', "records": [\n' + records + tail).encode("utf-8")


def describe_columns() -> str:
    """The clause files and their columns, as Markdown (the auditor's README, the docs)."""
    lines: list[str] = []
    for clause in CLAUSES:
        lines.append(f"### `clauses/{clause.file_stem}.csv` / `.json` — {clause.title}")
        lines.append("")
        descriptions = dict(COMMON_DESCRIPTIONS)
        descriptions.update({column: text for column, _, text in clause.columns})
        lines.extend(f"- `{column}`: {descriptions[column]}" for column in clause.header)
        lines.append("")
    lines.append(
        f"### `clauses/{AVAILABILITY_STEM}.csv` / `.json` — availability: major incidents"
        " as outages"
    )
    lines.append("")
    lines.extend(f"- `{c}`: {AVAILABILITY_DESCRIPTIONS[c]}" for c in AVAILABILITY_HEADER)
    lines.append("")
    return "\n".join(lines)


def sample_ids(record_ids: Iterable[str], n: int, seed: str) -> list[str]:
    """A reproducible sample: `random.Random(seed)` over the sorted distinct ids (same seed,
    same records, in the order drawn)."""
    population = sorted(set(record_ids))
    return random.Random(seed).sample(
        population, min(n, len(population))
    )  # audit sampling, not secrecy
