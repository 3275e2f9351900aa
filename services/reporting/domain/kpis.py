"""KPIs of the service management processes, folded from the tenant's logged events.

Two pure steps, used alike by the background projection (`application/kpis.py`) and by anyone
recomputing the figures from an evidence export:

1. `fold(facts, event)`: one event of the log updates the *facts* of the records it concerns —
   one `Fact` per incident, service request, problem, change, deployment, survey and CI (its
   times, priority, category, services, group, agent, states reached, reopen count, SLA
   results, ...). Events are folded in log order; `touches(event)` names the facts an event may
   read or write, so a caller holding only some facts loads exactly those first.
2. `evaluate(facts, definitions, periods, dimension, ...)`: the KPI values of a set of facts for
   periods and one dimension, each value with the number of records it was computed from.

Times are seconds since the epoch (floats, exact through JSON), so a fact stored as JSON gives
back the same numbers. The definitions (`DEFINITIONS`) are the documented, versioned contract;
`docs/kpis.md` is generated from them.

What the words mean (from the events available):
- *acknowledged*: an incident's first move out of `new` to anything but `cancelled` (someone
  took it up); in business time, the response SLA clock's elapsed seconds when it stopped.
- *resolved*: the last move to `resolved` (a reopened incident's earlier resolution does not
  count); business time is the resolution clock's elapsed seconds when it stopped.
- *reopened*: a move from `resolved` or `closed` back to `new`, `in_progress` or `on_hold`.
- *first-contact resolution*: resolved by the person who logged it, never reassigned to
  another group or agent, never on hold, never reopened.
- *backlog*: records opened and not yet resolved (incidents), fulfilled or ended (requests),
  resolved or ended (problems, changes) at the period's end — or at the newest event folded,
  when the period is not over.
"""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.reporting.domain.clauses import LoggedEvent
from services.reporting.domain.report_data import (
    Better,
    Dimension,
    KpiDefinition,
    KpiPoint,
    Period,
    PeriodKind,
    Unit,
    instants_of,
    period_end,
    period_of,
)

FactKind = Literal["incident", "request", "problem", "change", "deployment", "survey", "ci"]
Key = tuple[str, str]  # (kind, record id)

SUCCESSFUL = frozenset({"successful", "successful_with_issues", "partial"})
_INCIDENT_OPEN = frozenset({"new", "in_progress", "on_hold"})
_INCIDENT_DONE = frozenset({"resolved", "closed"})


@dataclass
class Fact:
    """What the KPIs need of one record; fields a kind does not use stay at their default."""

    kind: str
    id: str
    opened: float | None = None
    ended: float | None = None  # left the backlog (None while it is in it)
    last: float = 0.0  # the newest event about it
    services: list[str] = field(default_factory=list)
    group: str | None = None
    agent: str | None = None
    priority: int | None = None
    category: str | None = None  # incident category, change type, CI class, request item
    state: str | None = None
    state_since: float | None = None
    in_state: dict[str, float] = field(default_factory=dict)  # seconds spent per state
    creator: str | None = None
    # incidents and requests
    ack: float | None = None
    resolved: float | None = None
    resolver: str | None = None
    reassigned: bool = False
    held: bool = False
    reopens: int = 0
    resp_met: bool | None = None
    resp_business: float | None = None
    resp_at: float | None = None
    res_met: bool | None = None
    res_business: float | None = None
    res_at: float | None = None
    warnings: list[float] = field(default_factory=list)
    breaches: list[float] = field(default_factory=list)
    major: float | None = None
    change: str | None = None  # the change that (probably) caused an incident
    approval_seconds: float | None = None  # requests: time awaiting approval; changes: waited
    approval_since: float | None = None
    # problems
    root_cause: float | None = None
    known_errors: list[float] = field(default_factory=list)
    links: list[float] = field(default_factory=list)
    # changes and deployments
    origin: str | None = None
    implemented: float | None = None
    outcome: str | None = None
    outcome_at: float | None = None
    caused: int = 0  # incidents linked to a change
    lead: float | None = None  # deployments: seconds from the change's creation
    status: str | None = None
    # surveys
    score: int | None = None
    answered: float | None = None
    # CIs
    drifts: list[float] = field(default_factory=list)
    unauthorized: list[float] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from their defaults (JSON values)."""
        out: dict[str, Any] = {}
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                out[name] = value
        out["kind"] = self.kind
        out["id"] = self.id
        return out

    @classmethod
    def for_reading(cls, value: Mapping[str, Any]) -> Fact:
        """A fact from its JSON for computing figures only: fields it lacks share their
        defaults (five times faster than `from_json`; never fold into it)."""
        fact = cls.__new__(cls)
        fact.__dict__.update(_DEFAULTS)
        fact.__dict__.update(value)
        return fact

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Fact:
        # Decoded JSON: its lists and objects are the fact's own already.
        return cls(**{name: item for name, item in value.items() if name in _FIELDS})

    def first_at(self) -> float:
        """The earliest time any KPI places this record at (for range queries)."""
        return min(self._times(), default=self.last)

    def _times(self) -> list[float]:
        times = [getattr(self, name) for name in _TIME_FIELDS]
        for name in _TIME_LISTS:
            times.extend(getattr(self, name))
        return [t for t in times if t is not None]

    def last_at(self) -> float:
        """The latest time any KPI places it at; infinity while it is in a backlog."""
        if self.opened is not None and self.ended is None and self.kind != "survey":
            return float("inf")
        return max([self.last, *self._times()])


# Every time a KPI may place a record at (`first_at`, `last_at` bound them).
_TIME_FIELDS = (
    "opened", "ended", "ack", "resolved", "resp_at", "res_at", "major", "root_cause",
    "implemented", "outcome_at", "answered",
)  # fmt: skip
_TIME_LISTS = ("warnings", "breaches", "known_errors", "links", "drifts", "unauthorized")

_FIELDS = frozenset(f.name for f in fields(Fact))
_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if callable(f.default_factory) else f.default)
    for f in fields(Fact)
    if f.name not in ("kind", "id")
}


# --- the fold ---------------------------------------------------------------------------------


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _sla_record(event: LoggedEvent) -> Key | None:
    clock = event.data.get("clock")
    if not isinstance(clock, Mapping):
        return None
    record = clock.get("record")
    record_id = clock.get("record_id")
    if record not in ("incident", "request") or not isinstance(record_id, str):
        return None
    return (record, record_id)


def touches(event: LoggedEvent) -> list[Key]:
    """The facts folding this event may read or write (load these before `fold`)."""
    t = event.type
    data = event.data
    if t.startswith("itsm.incident.sla."):
        key = _sla_record(event)
        return [] if key is None else [key]
    if t.startswith("itsm.incident.request."):
        return [("request", event.subject)]
    if t.startswith("itsm.incident.problem."):
        return [("problem", event.subject)]
    if t.startswith("itsm.incident.survey."):
        return [("survey", event.subject)]
    if t == "itsm.incident.created.v1":
        change = data.get("suspected_change")
        keys: list[Key] = [("incident", event.subject)]
        if isinstance(change, str):
            keys.append(("change", change))
        return keys
    if t == "itsm.incident.change_suspected.v1":
        keys = [("incident", event.subject)]
        if isinstance(data.get("change_id"), str):
            keys.append(("change", data["change_id"]))
        return keys
    if t in _INCIDENT_TYPES:
        return [("incident", event.subject)]
    if t == "itsm.change.deployment_recorded.v1":
        keys = [("deployment", str(data.get("deployment_id", event.subject)))]
        if isinstance(data.get("change_id"), str):
            keys.append(("change", data["change_id"]))
        return keys
    if t in _CHANGE_TYPES:
        return [("change", str(data.get("change_id", event.subject)))]
    if t.startswith("itsm.config.ci.") and isinstance(data.get("ci"), Mapping):
        return [("ci", str(data["ci"].get("id", event.subject)))]
    if t == "itsm.config.service_membership.changed.v1":
        return [("ci", str(data.get("ci_id", event.subject)))]
    return []


_INCIDENT_TYPES = frozenset(
    {
        "itsm.incident.updated.v1",
        "itsm.incident.transitioned.v1",
        "itsm.incident.major_declared.v1",
    }
)
_CHANGE_TYPES = frozenset(
    {
        "itsm.change.created.v1",
        "itsm.change.updated.v1",
        "itsm.change.transitioned.v1",
        "itsm.change.implemented.v1",
        "itsm.change.authorized.v1",
        "itsm.change.approval_rejected.v1",
    }
)


def _fact(facts: MutableMapping[Key, Fact], key: Key) -> Fact:
    fact = facts.get(key)
    if fact is None:
        fact = facts[key] = Fact(key[0], key[1])
    return fact


def _move(fact: Fact, to_state: str, at: float) -> None:
    """Account the time spent in the state left, and enter `to_state`."""
    if fact.state is not None and fact.state_since is not None:
        fact.in_state[fact.state] = fact.in_state.get(fact.state, 0.0) + max(
            at - fact.state_since, 0.0
        )
    fact.state = to_state
    fact.state_since = at


def _services(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return sorted(set(value))
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def fold(facts: MutableMapping[Key, Fact], event: LoggedEvent) -> list[Key]:
    """Apply one event to the facts (in log order); the keys of the facts it changed."""
    keys = touches(event)
    if not keys:
        return []
    handler = _HANDLERS.get(event.type)
    if handler is None:
        if event.type.startswith("itsm.incident.sla."):
            handler = _sla
        else:
            return []
    at = event.time.timestamp()
    changed = handler(facts, keys, event, at)
    for key in changed:
        fact = facts[key]
        fact.last = max(fact.last, at)
    return changed


Handler = Callable[[MutableMapping[Key, Fact], list[Key], LoggedEvent, float], list[Key]]


def _link_change(facts: MutableMapping[Key, Fact], incident: Fact, change_id: str) -> list[Key]:
    if incident.change is not None:
        return [incident.key]
    incident.change = change_id
    change = _fact(facts, ("change", change_id))
    change.caused += 1
    return [incident.key, change.key]


def _incident_created(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    f.opened = at
    f.creator = event.actor
    f.priority = data.get("priority")
    f.category = _text(data.get("category"))
    f.services = _services(data.get("services")) or []
    f.group = _text(data.get("assignment_group"))
    f.agent = _text(data.get("assignee"))
    _move(f, "new", at)
    if data.get("major"):
        f.major = at
    change = data.get("suspected_change")
    if isinstance(change, str):
        return _link_change(facts, f, change)
    return [f.key]


def _incident_updated(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    changes = data.get("changes")
    if isinstance(changes, Mapping):
        for name, attr in (("assignment_group", "group"), ("assignee", "agent")):
            change = changes.get(name)
            if isinstance(change, Mapping):
                before, after = change.get("from"), change.get("to")
                if before is not None and after != before:
                    f.reassigned = True
                setattr(f, attr, _text(after))
        category = changes.get("category")
        if isinstance(category, Mapping):
            f.category = _text(category.get("to"))
    if isinstance(data.get("priority"), int):
        f.priority = data["priority"]
    services = _services(data.get("services"))
    if services is not None:
        f.services = services
    return [f.key]


def _incident_transitioned(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    before, after = data.get("from_state"), str(data.get("to_state"))
    _move(f, after, at)
    if isinstance(data.get("priority"), int):
        f.priority = data["priority"]
    if before == "new" and after != "cancelled" and f.ack is None:
        f.ack = at
    if after == "on_hold":
        f.held = True
    if before in _INCIDENT_DONE and after in _INCIDENT_OPEN:
        f.reopens += 1
        f.resolved = None
        f.resolver = None
        f.ended = None
    if after == "resolved":
        f.resolved = at
        f.resolver = event.actor
        f.ended = at
    elif after in ("closed", "cancelled") and f.ended is None:
        f.ended = at
    return [f.key]


def _major_declared(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    f = _fact(facts, keys[0])
    if f.major is None:
        f.major = at
    return [f.key]


def _change_suspected(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    f = _fact(facts, keys[0])
    change = event.data.get("change_id")
    if not isinstance(change, str):
        return [f.key]
    return _link_change(facts, f, change)


def _sla(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    f = _fact(facts, keys[0])
    clock = event.data["clock"]
    if event.type == "itsm.incident.sla.warning_reached.v1":
        f.warnings.append(at)
    elif event.type == "itsm.incident.sla.breached.v1":
        f.breaches.append(at)
    elif event.type == "itsm.incident.sla.clock_stopped.v1":
        met = event.data.get("result") == "met"
        elapsed = float(event.data.get("elapsed_seconds", 0.0))
        if clock.get("kind") == "response":
            f.resp_met, f.resp_business, f.resp_at = met, elapsed, at
        else:
            f.res_met, f.res_business, f.res_at = met, elapsed, at
    else:
        return []
    if f.priority is None and isinstance(clock.get("priority"), int):
        f.priority = clock["priority"]
    return [f.key]


def _request_submitted(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    f.opened = at
    f.creator = _text(data.get("requester")) or event.actor
    f.priority = data.get("priority")
    f.category = _text(data.get("item"))
    service = _text(data.get("service"))
    f.services = [service] if service else []
    _move(f, "submitted", at)
    return [f.key]


def _request_transitioned(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    before, after = data.get("from_state"), str(data.get("to_state"))
    _move(f, after, at)
    if after == "awaiting_approval":
        f.approval_since = at
    elif before == "awaiting_approval" and f.approval_since is not None:
        f.approval_seconds = (f.approval_seconds or 0.0) + max(at - f.approval_since, 0.0)
        f.approval_since = None
    if before == "submitted" and f.ack is None and after != "cancelled":
        f.ack = at
    if after == "fulfilled":
        f.resolved = at
        f.ended = at
    elif after in ("closed", "rejected", "cancelled") and f.ended is None:
        f.ended = at
    return [f.key]


def _problem_created(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    f.opened = at
    f.creator = event.actor
    service = _text(data.get("service"))
    f.services = [service] if service else []
    f.category = _text(data.get("origin"))
    incidents = data.get("incidents")
    if isinstance(incidents, list):
        f.links.extend([at] * len(incidents))
    _move(f, "new", at)
    return [f.key]


def _problem_transitioned(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    after = str(data.get("to_state"))
    _move(f, after, at)
    if f.root_cause is None and (after == "known_error" or data.get("root_cause")):
        f.root_cause = at
    if after in ("resolved", "closed", "cancelled"):
        if f.ended is None:
            f.ended = at
    else:
        f.ended = None
    return [f.key]


def _problem_linked(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    f = _fact(facts, keys[0])
    f.links.append(at)
    return [f.key]


def _known_error(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    f = _fact(facts, keys[0])
    f.known_errors.append(at)
    if f.root_cause is None:
        f.root_cause = at
    return [f.key]


def _survey(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    if event.type == "itsm.incident.survey.sent.v1":
        f.opened = at
        f.category = _text(data.get("record"))
    else:
        score = data.get("score")
        f.score = score if isinstance(score, int) else None
        f.answered = at
    services = _services(data.get("services"))
    if services is not None:
        f.services = services
    f.group = _text(data.get("assignment_group")) or f.group
    f.agent = _text(data.get("assignee")) or f.agent
    return [f.key]


def _change(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    t = event.type
    if t == "itsm.change.created.v1":
        f.opened = at
        f.creator = _text(data.get("requester")) or event.actor
        f.category = _text(data.get("type"))
        f.origin = _text(data.get("origin"))
        f.group = _text(data.get("assignment_group"))
        f.agent = _text(data.get("implementer"))
        f.services = _services(data.get("business_services")) or []
        _move(f, "new", at)
    elif t == "itsm.change.updated.v1":
        changes = data.get("changes")
        if isinstance(changes, Mapping):
            for name, attr in (
                ("assignment_group", "group"),
                ("implementer", "agent"),
                ("type", "category"),
            ):
                change = changes.get(name)
                if isinstance(change, Mapping):
                    setattr(f, attr, _text(change.get("to")))
            change = changes.get("business_services")
            if isinstance(change, Mapping):
                f.services = _services(change.get("to")) or []
    elif t == "itsm.change.transitioned.v1":
        after = str(data.get("to_state"))
        _move(f, after, at)
        f.category = _text(data.get("type")) or f.category
        outcome = _text(data.get("outcome"))
        if outcome is not None and outcome != f.outcome:
            f.outcome, f.outcome_at = outcome, at
        if after in ("closed", "cancelled"):
            if f.ended is None:
                f.ended = at
        else:
            f.ended = None
    elif t == "itsm.change.implemented.v1":
        f.implemented = _ts(data.get("implemented_at")) or at
        if f.outcome is None:
            f.outcome, f.outcome_at = _text(data.get("outcome")) or "successful", at
    elif t in ("itsm.change.authorized.v1", "itsm.change.approval_rejected.v1"):
        waited = data.get("waited_seconds")
        if isinstance(waited, int | float):
            f.approval_seconds = (f.approval_seconds or 0.0) + float(waited)
    return [f.key]


def _deployment(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    when = _ts(data.get("at")) or at
    f.opened = f.ended = when
    f.status = _text(data.get("status"))
    f.category = _text(data.get("environment"))
    if len(keys) > 1:
        change = facts.get(keys[1])
        f.change = keys[1][1]
        if change is not None:
            f.services = list(change.services)
            f.group, f.agent = change.group, change.agent
            if change.opened is not None:
                f.lead = max(when - change.opened, 0.0)
    return [f.key]


def _ci(
    facts: MutableMapping[Key, Fact], keys: list[Key], event: LoggedEvent, at: float
) -> list[Key]:
    data = event.data
    f = _fact(facts, keys[0])
    t = event.type
    if t == "itsm.config.service_membership.changed.v1":
        f.services = _services(data.get("services")) or []
        return [f.key]
    ci = data["ci"]
    if t == "itsm.config.ci.drift_detected.v1":
        f.drifts.append(at)
        return [f.key]
    if t == "itsm.config.ci.unauthorized_change_detected.v1":
        f.unauthorized.append(at)
        return [f.key]
    f.category = _text(ci.get("ci_class")) or f.category
    f.group = _text(ci.get("owner_team"))
    if t == "itsm.config.ci.created.v1" and f.opened is None:
        f.opened = at
    status = ci.get("status")
    if status == "retired" or t == "itsm.config.ci.retired.v1":
        f.ended = f.ended or at
    elif f.opened is not None:
        f.ended = None
    f.state = _text(status)
    return [f.key]


_HANDLERS: dict[str, Handler] = {
    "itsm.incident.created.v1": _incident_created,
    "itsm.incident.updated.v1": _incident_updated,
    "itsm.incident.transitioned.v1": _incident_transitioned,
    "itsm.incident.major_declared.v1": _major_declared,
    "itsm.incident.change_suspected.v1": _change_suspected,
    "itsm.incident.request.submitted.v1": _request_submitted,
    "itsm.incident.request.transitioned.v1": _request_transitioned,
    "itsm.incident.problem.created.v1": _problem_created,
    "itsm.incident.problem.transitioned.v1": _problem_transitioned,
    "itsm.incident.problem.incident_linked.v1": _problem_linked,
    "itsm.incident.problem.known_error_published.v1": _known_error,
    "itsm.incident.survey.sent.v1": _survey,
    "itsm.incident.survey.answered.v1": _survey,
    "itsm.change.deployment_recorded.v1": _deployment,
    "itsm.config.ci.created.v1": _ci,
    "itsm.config.ci.updated.v1": _ci,
    "itsm.config.ci.retired.v1": _ci,
    "itsm.config.ci.drift_detected.v1": _ci,
    "itsm.config.ci.unauthorized_change_detected.v1": _ci,
    "itsm.config.service_membership.changed.v1": _ci,
    **dict.fromkeys(_CHANGE_TYPES, _change),
}


def fold_all(events: Iterable[LoggedEvent]) -> dict[Key, Fact]:
    """Every fact of a log read from its start (a recomputation from an evidence export)."""
    facts: dict[Key, Fact] = {}
    for event in events:
        fold(facts, event)
    return facts


# --- periods ----------------------------------------------------------------------------------


def periods(kind: PeriodKind, start: date, count: int) -> list[Period]:
    """`count` consecutive periods, the first containing `start`."""
    out = [period_of(kind, start)]
    while len(out) < count:
        out.append(period_of(kind, period_end(out[-1])))
    return out


def bounds(period: Period, zone: ZoneInfo) -> tuple[float, float]:
    """The period's [start, end) in epoch seconds, its days read in the time zone."""
    start, end = instants_of(period, zone)
    return start.timestamp(), end.timestamp()


# --- the definitions --------------------------------------------------------------------------

Aggregate = Literal[
    "count", "events", "mean", "median", "sum", "ratio", "backlog", "aging", "rate", "active"
]


@dataclass(frozen=True)
class Measure:
    """How a KPI is computed from facts: which records (`kind`, `where`), placed in a period
    by `at`, and what is aggregated (`value`, or `times` for counted events)."""

    kind: FactKind
    aggregate: Aggregate
    at: Callable[[Fact], float | None] = lambda f: f.opened
    value: Callable[[Fact], float | bool | None] = lambda f: True
    where: Callable[[Fact], bool] = lambda f: True
    times: Callable[[Fact], Sequence[float]] = lambda f: ()


@dataclass(frozen=True)
class Kpi:
    definition: KpiDefinition
    measure: Measure


def _diff(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(later - earlier, 0.0)


def _fcr(f: Fact) -> bool:
    return (
        f.resolver is not None
        and f.resolver == f.creator
        and not f.reassigned
        and not f.held
        and f.reopens == 0
    )


def _failed(f: Fact) -> bool | None:
    return None if f.outcome is None else f.outcome in ("failed", "rolled_back")


def _k(
    id_: str,
    title: str,
    unit: Unit,
    better: Better,
    process: str,
    description: str,
    measure: Measure,
    version: int = 1,
) -> Kpi:
    return Kpi(KpiDefinition(id_, version, title, unit, better, process, description), measure)


_PRIORITY_NAMES = {1: "P1", 2: "P2", 3: "P3", 4: "P4", 5: "P5"}

KPIS: tuple[Kpi, ...] = (
    # incidents
    _k("incident.volume", "Incidents logged", "count", "none", "incident",
       "Incidents logged in the period (split by priority or category with the dimension).",
       Measure("incident", "count")),
    _k("incident.acknowledge_time.mean", "Mean time to acknowledge", "seconds", "lower",
       "incident", "Calendar seconds from logging to the first move out of `new` (not to"
       " `cancelled`), over incidents acknowledged in the period.",
       Measure("incident", "mean", at=lambda f: f.ack, value=lambda f: _diff(f.ack, f.opened))),
    _k("incident.acknowledge_time.median", "Median time to acknowledge", "seconds", "lower",
       "incident", "As the mean, the median.",
       Measure("incident", "median", at=lambda f: f.ack, value=lambda f: _diff(f.ack, f.opened))),
    _k("incident.acknowledge_business_time.mean", "Mean time to acknowledge (business)",
       "seconds", "lower", "incident", "Business seconds the response SLA clock counted, over"
       " incidents whose response clock stopped in the period.",
       Measure("incident", "mean", at=lambda f: f.resp_at, value=lambda f: f.resp_business)),
    _k("incident.acknowledge_business_time.median", "Median time to acknowledge (business)",
       "seconds", "lower", "incident", "As the mean, the median.",
       Measure("incident", "median", at=lambda f: f.resp_at, value=lambda f: f.resp_business)),
    _k("incident.resolve_time.mean", "Mean time to resolve", "seconds", "lower", "incident",
       "Calendar seconds from logging to the last resolution, over incidents resolved in the"
       " period (and not reopened since).",
       Measure("incident", "mean", at=lambda f: f.resolved,
               value=lambda f: _diff(f.resolved, f.opened))),
    _k("incident.resolve_time.median", "Median time to resolve", "seconds", "lower", "incident",
       "As the mean, the median.",
       Measure("incident", "median", at=lambda f: f.resolved,
               value=lambda f: _diff(f.resolved, f.opened))),
    _k("incident.resolve_business_time.mean", "Mean time to resolve (business)", "seconds",
       "lower", "incident", "Business seconds the resolution SLA clock counted, over incidents"
       " whose resolution clock stopped in the period.",
       Measure("incident", "mean", at=lambda f: f.res_at, value=lambda f: f.res_business)),
    _k("incident.resolve_business_time.median", "Median time to resolve (business)", "seconds",
       "lower", "incident", "As the mean, the median.",
       Measure("incident", "median", at=lambda f: f.res_at, value=lambda f: f.res_business)),
    _k("incident.first_contact_resolution", "First-contact resolution", "ratio", "higher",
       "incident", "Share of incidents resolved in the period by the person who logged them,"
       " never reassigned, never on hold, never reopened.",
       Measure("incident", "ratio", at=lambda f: f.resolved, value=_fcr)),
    _k("incident.reopen_rate", "Reopen rate", "ratio", "lower", "incident",
       "Share of incidents resolved in the period that had been reopened before (a move from"
       " resolved or closed back to new, in progress or on hold).",
       Measure("incident", "ratio", at=lambda f: f.resolved, value=lambda f: f.reopens > 0)),
    _k("incident.backlog", "Incident backlog", "count", "lower", "incident",
       "Incidents logged and not resolved, closed or cancelled at the period's end (or at the"
       " newest event, for a period not over).",
       Measure("incident", "backlog")),
    _k("incident.backlog_age.mean", "Mean age of the backlog", "seconds", "lower", "incident",
       "Mean calendar seconds since logging of the backlog's incidents at the same instant.",
       Measure("incident", "aging")),
    _k("incident.sla.response_compliance", "Response SLA compliance", "ratio", "higher",
       "incident", "Share of response clocks stopped in the period that met their target"
       " (by priority with the priority dimension).",
       Measure("incident", "ratio", at=lambda f: f.resp_at, value=lambda f: f.resp_met)),
    _k("incident.sla.resolution_compliance", "Resolution SLA compliance", "ratio", "higher",
       "incident", "Share of resolution clocks stopped in the period that met their target.",
       Measure("incident", "ratio", at=lambda f: f.res_at, value=lambda f: f.res_met)),
    _k("incident.sla.breaches", "SLA breaches", "count", "lower", "incident",
       "SLA clocks of incidents that reached their target in the period (breach events).",
       Measure("incident", "events", times=lambda f: f.breaches)),
    _k("incident.sla.warnings", "SLA warnings", "count", "lower", "incident",
       "SLA clocks of incidents that reached their warning share in the period.",
       Measure("incident", "events", times=lambda f: f.warnings)),
    _k("incident.major.count", "Major incidents", "count", "lower", "incident",
       "Incidents declared major in the period.",
       Measure("incident", "count", at=lambda f: f.major)),
    _k("incident.major.duration.mean", "Mean major incident duration", "seconds", "lower",
       "incident", "Calendar seconds from declaration to resolution, over major incidents"
       " resolved in the period.",
       Measure("incident", "mean", at=lambda f: f.resolved if f.major is not None else None,
               value=lambda f: _diff(f.resolved, f.major))),
    _k("incident.caused_by_change", "Incidents caused by changes", "count", "lower", "incident",
       "Incidents logged in the period that are linked to a change implemented shortly before"
       " on their CI (suspected change).",
       Measure("incident", "count", where=lambda f: f.change is not None)),
    # workload
    _k("workload.handled", "Records handled", "count", "none", "workload",
       "Incidents in work at any time of the period (logged before its end, not resolved"
       " before its start), per agent or group with the dimension (the current assignee).",
       Measure("incident", "active")),
    _k("workload.resolved", "Records resolved", "count", "none", "workload",
       "Incidents resolved in the period, per resolving assignee or group.",
       Measure("incident", "count", at=lambda f: f.resolved)),
    _k("workload.time_in_progress.mean", "Mean time in progress", "seconds", "lower",
       "workload", "Calendar seconds spent `in_progress`, over incidents resolved in the"
       " period.",
       Measure("incident", "mean", at=lambda f: f.resolved,
               value=lambda f: f.in_state.get("in_progress", 0.0))),
    _k("workload.time_on_hold.mean", "Mean time on hold", "seconds", "lower", "workload",
       "Calendar seconds spent `on_hold`, over incidents resolved in the period.",
       Measure("incident", "mean", at=lambda f: f.resolved,
               value=lambda f: f.in_state.get("on_hold", 0.0))),
    _k("workload.time_new.mean", "Mean time waiting in new", "seconds", "lower", "workload",
       "Calendar seconds spent `new`, over incidents resolved in the period.",
       Measure("incident", "mean", at=lambda f: f.resolved,
               value=lambda f: f.in_state.get("new", 0.0))),
    # requests
    _k("request.volume", "Service requests submitted", "count", "none", "request",
       "Service requests submitted in the period.", Measure("request", "count")),
    _k("request.approval_time.mean", "Mean approval time", "seconds", "lower", "request",
       "Calendar seconds awaiting approval, over requests whose approval ended in the period"
       " (fulfilled or ended).",
       Measure("request", "mean", at=lambda f: f.ended, value=lambda f: f.approval_seconds)),
    _k("request.fulfilment_time.mean", "Mean fulfilment time", "seconds", "lower", "request",
       "Calendar seconds from submission to fulfilment, over requests fulfilled in the period.",
       Measure("request", "mean", at=lambda f: f.resolved,
               value=lambda f: _diff(f.resolved, f.opened))),
    _k("request.fulfilment_time.median", "Median fulfilment time", "seconds", "lower",
       "request", "As the mean, the median.",
       Measure("request", "median", at=lambda f: f.resolved,
               value=lambda f: _diff(f.resolved, f.opened))),
    _k("request.sla.resolution_compliance", "Request SLA compliance", "ratio", "higher",
       "request", "Share of requests' resolution clocks stopped in the period that met their"
       " target.",
       Measure("request", "ratio", at=lambda f: f.res_at, value=lambda f: f.res_met)),
    _k("request.backlog", "Request backlog", "count", "lower", "request",
       "Requests submitted and not fulfilled, closed, rejected or cancelled at the period's"
       " end.", Measure("request", "backlog")),
    # problems
    _k("problem.open", "Open problems", "count", "lower", "problem",
       "Problems not resolved, closed or cancelled at the period's end.",
       Measure("problem", "backlog")),
    _k("problem.root_cause_time.mean", "Mean time to root cause", "seconds", "lower", "problem",
       "Calendar seconds from opening to the root cause being known (the move to"
       " `known_error`, a root cause recorded, or a known error published), over problems whose"
       " root cause was found in the period.",
       Measure("problem", "mean", at=lambda f: f.root_cause,
               value=lambda f: _diff(f.root_cause, f.opened))),
    _k("problem.known_errors_published", "Known errors published", "count", "none", "problem",
       "Known errors published in the period.",
       Measure("problem", "events", times=lambda f: f.known_errors)),
    _k("problem.incidents_linked", "Incidents linked to problems", "count", "none", "problem",
       "Incidents linked to problems in the period (at creation or later).",
       Measure("problem", "events", times=lambda f: f.links)),
    # changes
    _k("change.volume", "Changes raised", "count", "none", "change",
       "Requests for change raised in the period (by type with the category dimension).",
       Measure("change", "count")),
    _k("change.emergency_share", "Emergency changes", "ratio", "lower", "change",
       "Share of the changes raised in the period that are emergency changes.",
       Measure("change", "ratio", value=lambda f: f.category == "emergency")),
    _k("change.success_rate", "Change success rate", "ratio", "higher", "change",
       "Share of changes whose outcome was recorded in the period that were successful"
       " (with or without issues).",
       Measure("change", "ratio", at=lambda f: f.outcome_at,
               value=lambda f: None if f.outcome is None else f.outcome in SUCCESSFUL)),
    _k("change.failed_share", "Failed changes", "ratio", "lower", "change",
       "Share of changes whose outcome was recorded in the period that failed.",
       Measure("change", "ratio", at=lambda f: f.outcome_at,
               value=lambda f: None if f.outcome is None else f.outcome == "failed")),
    _k("change.rolled_back_share", "Rolled-back changes", "ratio", "lower", "change",
       "Share of changes whose outcome was recorded in the period that were rolled back.",
       Measure("change", "ratio", at=lambda f: f.outcome_at,
               value=lambda f: None if f.outcome is None else f.outcome == "rolled_back")),
    _k("change.unauthorized", "Unauthorized changes", "count", "lower", "change",
       "Changes opened in the period for a modification nobody authorised (origin"
       " `unauthorized`).",
       Measure("change", "count", where=lambda f: f.origin == "unauthorized")),
    _k("change.lead_time.mean", "Mean change lead time", "seconds", "lower", "change",
       "Calendar seconds from raising a change to its implementation, over changes"
       " implemented in the period.",
       Measure("change", "mean", at=lambda f: f.implemented,
               value=lambda f: _diff(f.implemented, f.opened))),
    _k("change.approval_wait.mean", "Mean approval wait", "seconds", "lower", "change",
       "Seconds a change waited for its approval steps (every round), over changes"
       " implemented in the period.",
       Measure("change", "mean", at=lambda f: f.implemented, value=lambda f: f.approval_seconds)),
    _k("change.backlog", "Open changes", "count", "none", "change",
       "Changes raised and not closed or cancelled at the period's end.",
       Measure("change", "backlog")),
    # DORA
    _k("dora.deployment_frequency", "Deployment frequency", "per_day", "higher", "deployment",
       "Successful deployments per day of the period (days elapsed, for a period not over).",
       Measure("deployment", "rate", where=lambda f: f.status == "succeeded")),
    _k("dora.lead_time.mean", "Lead time for changes", "seconds", "lower", "deployment",
       "Calendar seconds from raising a change to its successful deployment, over deployments"
       " in the period that name a change.",
       Measure("deployment", "mean", where=lambda f: f.status == "succeeded",
               value=lambda f: f.lead)),
    _k("dora.change_failure_rate", "Change failure rate", "ratio", "lower", "deployment",
       "Share of changes implemented in the period that failed, were rolled back, or caused an"
       " incident (an incident causally linked to the change).",
       Measure("change", "ratio", at=lambda f: f.implemented,
               value=lambda f: f.caused > 0 or bool(_failed(f)))),
    _k("dora.time_to_restore.mean", "Time to restore service", "seconds", "lower", "deployment",
       "Calendar seconds from logging to resolution of incidents caused by a change, over"
       " those resolved in the period.",
       Measure("incident", "mean", at=lambda f: f.resolved if f.change else None,
               value=lambda f: _diff(f.resolved, f.opened))),
    # configuration
    _k("config.cis", "Configuration items", "count", "none", "configuration",
       "CIs registered and not retired at the period's end (by class with the category"
       " dimension).", Measure("ci", "backlog")),
    _k("config.drift_found", "Drift found", "count", "lower", "configuration",
       "Controlled CIs found by discovery different from their record, in the period.",
       Measure("ci", "events", times=lambda f: f.drifts)),
    _k("config.unauthorized_modifications", "Modifications without an authorising change",
       "count", "lower", "configuration",
       "CIs under change control modified or found drifted with no change authorising it.",
       Measure("ci", "events", times=lambda f: f.unauthorized)),
    # customer satisfaction
    _k("csat.score.mean", "Customer satisfaction", "score", "higher", "satisfaction",
       "Mean survey score (1 very dissatisfied .. 5 very satisfied) of the answers given in"
       " the period, per service, group or agent of the record.",
       Measure("survey", "mean", at=lambda f: f.answered, value=lambda f: f.score)),
    _k("csat.responses", "Survey answers", "count", "none", "satisfaction",
       "Surveys answered in the period.", Measure("survey", "count", at=lambda f: f.answered)),
    _k("csat.response_rate", "Survey response rate", "ratio", "higher", "satisfaction",
       "Share of the surveys sent in the period that were answered (by now).",
       Measure("survey", "ratio", value=lambda f: f.answered is not None)),
)  # fmt: skip

DEFINITIONS: tuple[KpiDefinition, ...] = tuple(k.definition for k in KPIS)
BY_ID: dict[str, Kpi] = {k.definition.id: k for k in KPIS}


def kinds_of(kpi_ids: Iterable[str]) -> set[str]:
    """The fact kinds these KPIs read."""
    return {BY_ID[k].measure.kind for k in kpi_ids}


# --- evaluation -------------------------------------------------------------------------------


def dimension_values(fact: Fact, dimension: Dimension | str) -> Sequence[str | None]:
    """The values of a dimension a fact counts under (a record of two services counts under
    both); `tenant`: the whole (None)."""
    if dimension == "service":
        return fact.services
    if dimension == "group":
        return [fact.group] if fact.group else []
    if dimension == "agent":
        return [fact.agent] if fact.agent else []
    if dimension == "priority":
        return [_PRIORITY_NAMES[fact.priority]] if fact.priority in _PRIORITY_NAMES else []
    if dimension == "category":
        return [fact.category] if fact.category else []
    return [None]


def _aggregate(
    measure: Measure, facts: Sequence[Fact], start: float, end: float, as_of: float
) -> tuple[float | None, int]:
    """(value, records counted) of one measure over facts for [start, end)."""
    agg = measure.aggregate
    where = measure.where
    if agg in ("backlog", "aging"):
        # At the period's end, or at the newest event (which itself counts) when not over.
        instant = min(end, as_of)
        if instant <= start:
            return (None, 0) if agg == "aging" else (0.0, 0)
        inclusive = as_of < end
        ages = [
            instant - f.opened
            for f in facts
            if f.opened is not None
            and (f.opened <= instant if inclusive else f.opened < instant)
            and (f.ended is None or f.ended > instant or (f.ended == instant and as_of >= end))
            and where(f)
        ]
        if agg == "backlog":
            return float(len(ages)), len(ages)
        return (sum(ages) / len(ages) if ages else None), len(ages)
    if agg == "events":
        n = 0
        for f in facts:
            times = measure.times(f)
            if times and where(f):
                n += sum(1 for t in times if start <= t < end)
        return float(n), n
    if agg == "active":
        n = sum(
            1
            for f in facts
            if f.opened is not None
            and f.opened < end
            and (f.ended is None or f.ended >= start)
            and where(f)
        )
        return float(n), n
    at = measure.at
    chosen = [f for f in facts if start <= (at(f) or -1.0) < end and where(f)]
    if agg == "count":
        return float(len(chosen)), len(chosen)
    if agg == "rate":
        days = (min(end, as_of) - start) / 86400.0
        if days <= 0:
            return None, len(chosen)
        return len(chosen) / days, len(chosen)
    values = [v for v in (measure.value(f) for f in chosen) if v is not None]
    if not values:
        return None, 0
    if agg == "ratio":
        return sum(1 for v in values if v) / len(values), len(values)
    numbers = [float(v) for v in values]
    if agg == "mean":
        return statistics.fmean(numbers), len(numbers)
    if agg == "median":
        return statistics.median(numbers), len(numbers)
    return sum(numbers), len(numbers)


def breached(value: float | None, target: float | None, better: Better) -> bool | None:
    """Whether the value is on the wrong side of its target."""
    if value is None or target is None or better == "none":
        return None
    return value < target if better == "higher" else value > target


def _groups(
    facts: list[Fact], dimension: Dimension | str, wanted: set[str] | None
) -> dict[str | None, list[Fact]]:
    if dimension == "tenant":
        return {None: facts}
    groups: dict[str | None, list[Fact]] = {}
    for fact in facts:
        for value in dimension_values(fact, dimension):
            if wanted is None or value in wanted:
                groups.setdefault(value, []).append(fact)
    for value in wanted or ():
        groups.setdefault(value, [])
    return groups


def evaluate(
    facts: Iterable[Fact],
    kpi_ids: Sequence[str],
    kind: PeriodKind,
    start: date,
    count: int,
    *,
    zone: ZoneInfo,
    as_of: float,
    dimension: Dimension | str = "tenant",
    values: Sequence[str] | None = None,
    services: Sequence[str] | None = None,
    targets: Mapping[str, float] | None = None,
) -> list[KpiPoint]:
    """The KPIs' points: per KPI, per period (in order), per dimension value (sorted; the
    tenant as a whole has the value None). `as_of` is the newest event's time: a period not
    over is measured up to it (backlog, rates)."""
    wanted_services = set(services) if services else None
    by_kind: dict[str, list[Fact]] = {}
    for fact in facts:
        if wanted_services is not None and not wanted_services.intersection(fact.services):
            continue
        by_kind.setdefault(fact.kind, []).append(fact)
    wanted_values = set(values) if values is not None else None
    spans = [(p, *bounds(p, zone)) for p in periods(kind, start, count)]
    points: list[KpiPoint] = []
    # The facts of each dimension value, per kind (every KPI of a kind shares them).
    grouped: dict[str, dict[str | None, list[Fact]]] = {}
    for kpi_id in kpi_ids:
        kpi = BY_ID[kpi_id]
        definition = kpi.definition
        groups = grouped.get(kpi.measure.kind)
        if groups is None:
            groups = grouped[kpi.measure.kind] = _groups(
                by_kind.get(kpi.measure.kind, []), dimension, wanted_values
            )
        target = (targets or {}).get(kpi_id)
        for period, lo, hi in spans:
            for value in sorted(groups, key=lambda v: "" if v is None else v):
                result, n = _aggregate(kpi.measure, groups[value], lo, hi, as_of)
                points.append(
                    KpiPoint(
                        kpi=kpi_id,
                        version=definition.version,
                        period=period,
                        dimension=dimension,  # type: ignore[arg-type]
                        dimension_value=value,
                        value=result,
                        count=n,
                        target=target,
                        breached=breached(result, target, definition.better),
                    )
                )
    return points


# --- recomputation from an evidence export ------------------------------------------------------


def event_of_entry(index: int, entry: bytes) -> LoggedEvent:
    """An entry of an export's `entries.jsonl` (its canonical bytes: the structured CloudEvent
    with the message as `data_base64`, docs/ledger.md) as the fold reads it."""
    members = json.loads(entry)
    value = base64.b64decode(members["data_base64"])
    data = json.loads(value) if value else {}
    return LoggedEvent(
        leaf_index=index,
        event_id=members.get("id", ""),
        type=members.get("type", ""),
        subject=members.get("subject", ""),
        version=int(members.get("itsmversion") or members.get("sequence") or 0),
        time=datetime.fromisoformat(members["time"]),
        actor=members.get("actor", ""),
        data=data if isinstance(data, dict) else {"value": data},
    )
