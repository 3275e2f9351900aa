"""Alert intake: Alertmanager webhooks and generic events become source-independent intents.

Pure: no I/O, no clock, no randomness. The HTTP layer validates a body against
`AlertmanagerWebhook` (`POST /integrations/alertmanager`) or `AlertEvent` (the generic events
endpoint), loads the tenant's `AlertMapping`, and calls `intent_from_alertmanager` or
`intent_from_event`; the application layer applies the `AlertIntent` to the incident that the
intent's `(source, dedup_key)` names within the tenant.

Formats (checked against the published sources, not guessed):

- Alertmanager's webhook notifier posts `template.Data` plus `version` (always "4"),
  `groupKey` and `truncatedAlerts` (alerts cut by the receiver's `max_alerts`). Group `status`
  is `firing` when any alert of the notification fires, else `resolved`. Each alert has
  `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`; an
  unset time is Go's zero time `0001-01-01T00:00:00Z` (a firing alert's `endsAt` always is),
  read here as None. Fields other notifiers add (Grafana's `orgId`, `silenceURL`, ...) are
  ignored; a `version` other than "4" is refused, naming `version`.
- The events endpoint takes PagerDuty Events API v2 alert events: `event_action` trigger,
  acknowledge or resolve; `dedup_key` (at most 255 characters); `payload` with `summary` (at
  most 1024), `source`, `severity` (critical, error, warning, info), `timestamp`, `component`,
  `group`, `class`, `custom_details`; `client`, `client_url`, `links`, `images`.
  `routing_key` is accepted and ignored: the bearer token says which tenant sends.

Rules:

1. One incident per alert group. Alertmanager's dedup key is the SHA-256 (hex, 64 characters)
   of `receiver` and `groupKey`; every notification of a group carries both unchanged,
   whatever its alerts and their order, and peers of an Alertmanager HA cluster send the same
   pair, so they update one incident. `externalURL` is left out on purpose: HA peers differ in
   it. An event's dedup key is its `dedup_key`. Keys of the two sources are separate spaces:
   the incident is found by (tenant, source, dedup_key).
2. `acknowledge` and `resolve` events need a `dedup_key` (refused naming `dedup_key`). A
   `trigger` without one gets a key derived deterministically from the payload (SHA-256 of
   `source`, `component`, `group`, `class` and `summary`) rather than a random one as
   PagerDuty does: a tool that retries a trigger updates the incident it opened instead of
   opening a second, and the endpoint returns the key so that the tool can acknowledge or
   resolve later. Tools that want distinct incidents for the same summary send their own key.
3. A `trigger` needs a `payload` with a non-blank `summary`; the other payload fields are
   optional (PagerDuty requires `source` and `severity`; a missing severity counts as an
   unknown one here). Acknowledge and resolve events need no payload, and their intents carry
   no title, description, impact or urgency (None: nothing new to record).
4. Severity → impact and urgency comes from the tenant's `AlertMapping.severity`, keyed by the
   severity value, case and surrounding blanks ignored; a value not in the map, or no value,
   gets `unknown_severity`. Alertmanager reads the `severity_label` label of each alert and the
   most severe alert wins: lowest priority from the impact × urgency matrix, then lowest
   impact, then lowest urgency. Only firing alerts count when there are any (a resolved alert
   of a firing group no longer says how bad things are). Events use `payload.severity`.
   Defaults (impact/urgency): critical, page 1/1 (P1); high, major, error 2/1 (P2); warning
   2/2 (P3); minor 3/2 (P4); low, info, none 3/3 (P5); unknown 2/2 (P3): an alert nobody
   classified gets ordinary attention, neither a page nor the bottom of the queue. A tenant's
   map replaces the defaults as a whole.
5. CI and service: the value of `ci_label` (and `service_label`) when every alert of the
   notification carries the same non-blank value; when alerts disagree or one lacks it, no
   reference (the description lists each alert's labels). The CI is matched by name or by
   external id from `ci_source`, per `ci_match`; the service is a business service named by
   the value. A value longer than any CI name or external id (200) is no reference. Events
   read the same label names from `payload.source`, `component`, `group` and `class` (by
   those names) and from string values of `custom_details` (a payload field wins over a
   custom detail of the same name): `ci_label = "source"` makes PagerDuty's source the CI.
6. Alertmanager group `firing` → `trigger` (open the incident, or update the open one);
   `resolved` → `resolve`, `ended_at` the latest `endsAt` of its alerts. `resolution_note`
   writes the note with that end time. `AlertIntent.auto_resolve` is the tenant's
   `AlertMapping.auto_resolve` (default False: the issue says alerts resolve incidents "when
   the tenant says so", so it is opt-in) for resolve intents of both sources, and False for
   the others: when False, the application records the note and leaves the state to people.
7. Title: Alertmanager's common `alertname` label, then `: ` and the common `summary`
   annotation when there is one; without a common alertname the group labels. Events: the
   summary. Blanks collapse to one space; at most 200 characters (`…` marks a cut).
   Description: the group's alerts, firing first, then by start and fingerprint, each with its
   labels and annotations, so that the same group gives the same text; events: summary,
   payload fields, client, links and custom details. At most 20,000 characters.
8. Bounds, so that a hostile body stays small in memory and cheap to render (the HTTP body
   limit caps the whole): at most `MAX_ALERTS` alerts (configure Alertmanager's `max_alerts`
   below it; what it cuts is counted in `truncatedAlerts`), `MAX_LABELS` labels or
   annotations per map, label names `MAX_LABEL_NAME`, label values `MAX_LABEL_VALUE`,
   annotation values `MAX_ANNOTATION_VALUE` characters, and the limits on each field below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from services.incident.domain.priority import priority_of
from shared.timestamps import in_range

ALERTMANAGER_VERSION: Final = "4"

MAX_ALERTS: Final = 1000
MAX_LABELS: Final = 128
MAX_LABEL_NAME: Final = 256
MAX_LABEL_VALUE: Final = 4096
MAX_ANNOTATION_VALUE: Final = 16_384
MAX_GROUP_KEY: Final = 16_384
MAX_RECEIVER: Final = 1024
MAX_URL: Final = 16_384  # generator URLs carry the PromQL expression
MAX_FINGERPRINT: Final = 128

MAX_DEDUP_KEY: Final = 255
MAX_SUMMARY: Final = 1024
MAX_EVENT_FIELD: Final = 1024
MAX_CUSTOM_DETAILS: Final = 100
MAX_CUSTOM_DETAILS_TEXT: Final = 16_384
MAX_LINKS: Final = 50

MAX_SEVERITIES: Final = 64
MAX_TITLE: Final = 200  # the incident's title limit
MAX_DESCRIPTION: Final = 20_000  # the incident's description limit
MAX_REF: Final = 200  # a CI's name and external id limit

SOURCE_NAME: Final = r"^[a-z0-9][a-z0-9_.-]{0,62}$"  # external-id sources, as the config service
_TRUNCATED: Final = "\n… (truncated)"
_BLANKS = re.compile(r"\s+")

Source = Literal["alertmanager", "events"]
Action = Literal["trigger", "acknowledge", "resolve"]
CiMatch = Literal["name", "external_id"]
EventSeverity = Literal["critical", "error", "warning", "info"]


def _unset_if_zero(value: datetime | None) -> datetime | None:
    """Go's zero time (year 1), Alertmanager's "not set", as None; otherwise within RANGE."""
    if value is None or value.year == 1:
        return None
    return in_range(value)


def _utc_if_naive(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


LabelName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_NAME)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
AnnotationValue = Annotated[str, StringConstraints(max_length=MAX_ANNOTATION_VALUE)]
Labels = Annotated[dict[LabelName, LabelValue], Field(max_length=MAX_LABELS)]
AlertAnnotations = Annotated[dict[LabelName, AnnotationValue], Field(max_length=MAX_LABELS)]
AlertTime = Annotated[AwareDatetime | None, AfterValidator(_unset_if_zero)]
Url = Annotated[str, StringConstraints(max_length=MAX_URL)]
EventText = Annotated[str, StringConstraints(max_length=MAX_EVENT_FIELD)]


# --- Alertmanager webhook (version 4) ----------------------------------------------------------


class AlertmanagerAlert(BaseModel):
    """One alert of an Alertmanager notification."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: AlertAnnotations = Field(default_factory=dict)
    starts_at: AlertTime = Field(default=None, alias="startsAt")
    ends_at: AlertTime = Field(
        default=None, alias="endsAt", description='Unset ("0001-01-01T00:00:00Z") reads as None.'
    )
    generator_url: Url = Field(default="", alias="generatorURL")
    fingerprint: str = Field(default="", max_length=MAX_FINGERPRINT)


class AlertmanagerWebhook(BaseModel):
    """Body of Alertmanager's webhook notification, version 4."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(description='Always "4"; other versions are refused.')
    group_key: str = Field(alias="groupKey", min_length=1, max_length=MAX_GROUP_KEY)
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=MAX_RECEIVER)
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: AlertAnnotations = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Url = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    @field_validator("version")
    @classmethod
    def _version_4(cls, value: str) -> str:
        if value != ALERTMANAGER_VERSION:
            raise ValueError(
                f"unsupported webhook payload version {value[:20]!r}: "
                f'only Alertmanager\'s version "{ALERTMANAGER_VERSION}" is accepted'
            )
        return value


# --- Events in the style of PagerDuty Events API v2 --------------------------------------------


class EventLink(BaseModel):
    """A link attached to an event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    href: Url
    text: EventText = ""


class EventImage(BaseModel):
    """An image attached to an event (kept for compatibility; not rendered)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    src: Url
    href: Url = ""
    alt: EventText = ""


class TriggerPayload(BaseModel):
    """What a trigger event says about the problem."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: str = Field(min_length=1, max_length=MAX_SUMMARY)
    source: EventText | None = None
    severity: EventSeverity | None = None
    timestamp: Annotated[datetime | None, AfterValidator(_utc_if_naive)] = Field(
        default=None, description="When the tool detected the problem; naive times are UTC."
    )
    component: EventText | None = None
    group: EventText | None = None
    event_class: EventText | None = Field(default=None, alias="class")
    custom_details: (
        Annotated[dict[str, Any], Field(max_length=MAX_CUSTOM_DETAILS)]
        | Annotated[str, StringConstraints(max_length=MAX_CUSTOM_DETAILS_TEXT)]
        | None
    ) = None

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("summary must not be blank")
        return value


class AlertEvent(BaseModel):
    """Body of the generic events endpoint (PagerDuty Events API v2 alert events)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Declared before the fields whose validators read it.
    event_action: Action
    routing_key: str | None = Field(
        default=None, max_length=256, description="Ignored: the bearer token names the tenant."
    )
    dedup_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DEDUP_KEY,
        validate_default=True,
        description="Required for acknowledge and resolve; derived from the payload if a "
        "trigger has none.",
    )
    payload: TriggerPayload | None = Field(
        default=None, validate_default=True, description="Required for trigger."
    )
    client: EventText | None = None
    client_url: Url | None = None
    links: list[EventLink] = Field(default_factory=list, max_length=MAX_LINKS)
    images: list[EventImage] = Field(default_factory=list, max_length=MAX_LINKS)

    @field_validator("dedup_key")
    @classmethod
    def _key_for_follow_ups(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("event_action")
        if value is None and action in ("acknowledge", "resolve"):
            raise ValueError(f"dedup_key is required for {action}")
        return value

    @field_validator("payload")
    @classmethod
    def _payload_for_trigger(
        cls, value: TriggerPayload | None, info: ValidationInfo
    ) -> TriggerPayload | None:
        if value is None and info.data.get("event_action") == "trigger":
            raise ValueError("a payload with a summary is required for trigger")
        return value


# --- Tenant configuration ----------------------------------------------------------------------


class SeverityLevel(BaseModel):
    """Impact and urgency, each 1 (high) to 3 (low), that a severity maps to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Strict: a tenant's settings body nests these, and "1" or true is not a level.
    impact: int = Field(strict=True, ge=1, le=3)
    urgency: int = Field(strict=True, ge=1, le=3)

    @property
    def priority(self) -> int:
        """P1..P5 from the default matrix."""
        return priority_of(self.impact, self.urgency)


def default_severities() -> dict[str, SeverityLevel]:
    """The severity map a tenant starts with (the common Prometheus and PagerDuty values)."""
    levels = {
        "critical": (1, 1),  # P1
        "page": (1, 1),
        "high": (2, 1),  # P2
        "major": (2, 1),
        "error": (2, 1),
        "warning": (2, 2),  # P3
        "minor": (3, 2),  # P4
        "low": (3, 3),  # P5
        "info": (3, 3),
        "none": (3, 3),
    }
    return {name: SeverityLevel(impact=i, urgency=u) for name, (i, u) in levels.items()}


DEFAULT_UNKNOWN_SEVERITY: Final = SeverityLevel(impact=2, urgency=2)

SeverityName = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64)
]
ConfigLabel = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_NAME)]


class AlertMapping(BaseModel):
    """A tenant's rules for turning alerts into incidents (the defaults are the starting point)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity_label: ConfigLabel = Field(
        default="severity", description="The Alertmanager label that holds the severity."
    )
    severity: Annotated[dict[SeverityName, SeverityLevel], Field(max_length=MAX_SEVERITIES)] = (
        Field(
            default_factory=default_severities,
            description="Severity value (any case) → impact and urgency. Replaces the defaults.",
        )
    )
    unknown_severity: SeverityLevel = Field(
        default=DEFAULT_UNKNOWN_SEVERITY, description="For a severity not in the map, or none."
    )
    ci_label: ConfigLabel | None = Field(
        default="ci", description="The label naming the affected CI; None: never link a CI."
    )
    ci_match: CiMatch = Field(
        default="name", description="Match the label's value to a CI's name or external id."
    )
    ci_source: str | None = Field(
        default=None,
        pattern=SOURCE_NAME,
        validate_default=True,
        description="The external-id source (for example `prometheus`); required with "
        "`ci_match` external_id.",
    )
    service_label: ConfigLabel | None = Field(
        default="service", description="The label naming the business service; None: never."
    )
    auto_resolve: bool = Field(
        strict=True,
        default=False,
        description="Resolve the incident when its alerts resolve; otherwise only add a note.",
    )

    @field_validator("severity", mode="before")
    @classmethod
    def _one_entry_per_value(cls, value: Any) -> Any:
        if isinstance(value, dict):
            seen: dict[str, str] = {}
            for key in value:
                if isinstance(key, str):
                    norm = key.strip().lower()
                    if norm in seen:
                        raise ValueError(f"{seen[norm]!r} and {key!r} are the same severity")
                    seen[norm] = key
        return value

    @field_validator("ci_source")
    @classmethod
    def _source_for_external_ids(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("ci_match") == "external_id":
            raise ValueError("ci_source is required when ci_match is external_id")
        return value

    def level_of(self, severity: str | None) -> SeverityLevel:
        """Impact and urgency for a severity value (case and surrounding blanks ignored)."""
        if severity is None:
            return self.unknown_severity
        return self.severity.get(severity.strip().lower(), self.unknown_severity)


# --- Intents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiRef:
    """A reference to a CI, to be looked up by the application: by name or by external id."""

    value: str
    match: CiMatch
    source: str | None = None  # the external-id source when match is external_id


@dataclass(frozen=True)
class AlertIntent:
    """What an alert notification asks of the incident named by (tenant, source, dedup_key)."""

    source: Source
    dedup_key: str
    action: Action
    title: str | None  # None: nothing new (acknowledge or resolve events without payload)
    description: str | None
    impact: int | None
    urgency: int | None
    ci_ref: CiRef | None
    service_ref: str | None  # a business service's name
    started_at: datetime | None  # the earliest start of the alerts, or the event's time (UTC)
    ended_at: datetime | None  # resolve intents: when the alerts ended, if known (UTC)
    alert_count: int
    truncated_alerts: int
    fingerprints: tuple[str, ...]
    auto_resolve: bool  # resolve intents: move the incident to resolved, not only note it


def alertmanager_dedup_key(receiver: str, group_key: str) -> str:
    """The incident key of an Alertmanager alert group: SHA-256 hex of receiver and group key."""
    return _digest([receiver, group_key])


def event_dedup_key(event: AlertEvent) -> str:
    """The event's own dedup key, or one derived from its payload (the same payload, the same
    key)."""
    if event.dedup_key is not None:
        return event.dedup_key
    payload = event.payload
    if payload is None:  # the model refuses this for every action
        raise ValueError("an event without dedup_key needs a payload")
    return _digest(
        [payload.source, payload.component, payload.group, payload.event_class, payload.summary]
    )


def intent_from_alertmanager(webhook: AlertmanagerWebhook, mapping: AlertMapping) -> AlertIntent:
    """The intent of one Alertmanager notification under the tenant's mapping."""
    alerts = sorted(webhook.alerts, key=_alert_order)
    firing = [a for a in alerts if a.status == "firing"]
    level = _most_severe(
        mapping.level_of(a.labels.get(mapping.severity_label)) for a in (firing or alerts)
    )
    resolve = webhook.status == "resolved"
    starts = [a.starts_at for a in alerts if a.starts_at is not None]
    ends = [a.ends_at for a in alerts if a.ends_at is not None]
    ci_value = _common_value(alerts, mapping.ci_label)
    return AlertIntent(
        source="alertmanager",
        dedup_key=alertmanager_dedup_key(webhook.receiver, webhook.group_key),
        action="resolve" if resolve else "trigger",
        title=_alertmanager_title(webhook, alerts),
        description=_bounded_description(_alertmanager_lines(webhook, alerts)),
        impact=level.impact,
        urgency=level.urgency,
        ci_ref=_ci_ref(ci_value, mapping),
        service_ref=_common_value(alerts, mapping.service_label),
        started_at=_utc(min(starts)) if starts else None,
        ended_at=_utc(max(ends)) if resolve and ends else None,
        alert_count=len(alerts),
        truncated_alerts=webhook.truncated_alerts,
        fingerprints=tuple(sorted({a.fingerprint for a in alerts if a.fingerprint})),
        auto_resolve=resolve and mapping.auto_resolve,
    )


def intent_from_event(event: AlertEvent, mapping: AlertMapping) -> AlertIntent:
    """The intent of one generic event under the tenant's mapping."""
    payload = event.payload
    labels = _event_labels(payload) if payload is not None else {}
    level = mapping.level_of(payload.severity) if payload is not None else None
    timestamp = _utc(payload.timestamp) if payload is not None else None
    resolve = event.event_action == "resolve"
    return AlertIntent(
        source="events",
        dedup_key=event_dedup_key(event),
        action=event.event_action,
        title=_title(payload.summary) if payload is not None else None,
        description=(
            _bounded_description(_event_lines(event, payload)) if payload is not None else None
        ),
        impact=level.impact if level is not None else None,
        urgency=level.urgency if level is not None else None,
        ci_ref=_ci_ref(_label(labels, mapping.ci_label), mapping),
        service_ref=_label(labels, mapping.service_label),
        started_at=timestamp if event.event_action == "trigger" else None,
        ended_at=timestamp if resolve else None,
        alert_count=1,
        truncated_alerts=0,
        fingerprints=(),
        auto_resolve=resolve and mapping.auto_resolve,
    )


def resolution_note(intent: AlertIntent, *, received_at: datetime) -> str:
    """The note that records a resolve intent: when the alerts ended (else when it arrived)."""
    if intent.source == "alertmanager":
        count = intent.alert_count
        alerts = "its alert has" if count == 1 else f"all {count} of its alerts have"
        if intent.ended_at is not None:
            end = f"the last ended at {_iso(intent.ended_at)}"
        else:
            end = f"no end time given; notification received at {_iso(received_at)}"
        return f"Alertmanager reports the alert group resolved: {alerts} ended ({end})."
    if intent.ended_at is not None:
        when = f"the problem ended at {_iso(intent.ended_at)}"
    else:
        when = f"received at {_iso(received_at)}"
    return f"The monitoring tool sent a resolve event for dedup key {intent.dedup_key} ({when})."


# --- helpers -----------------------------------------------------------------------------------


def _digest(parts: list[str | None]) -> str:
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _alert_order(alert: AlertmanagerAlert) -> tuple[int, datetime, str]:
    """Firing first, then by start and fingerprint: the same group, the same order."""
    start = alert.starts_at or datetime.min.replace(tzinfo=UTC)
    return (0 if alert.status == "firing" else 1, start, alert.fingerprint)


def _most_severe(levels: Iterable[SeverityLevel]) -> SeverityLevel:
    return min(levels, key=lambda level: (level.priority, level.impact, level.urgency))


def _clean(value: str | None) -> str | None:
    """A label value as a reference: stripped, None when blank."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _common_value(alerts: list[AlertmanagerAlert], label: str | None) -> str | None:
    """The label's value when every alert has the same non-blank one, else None."""
    if label is None:
        return None
    values = {_clean(a.labels.get(label)) for a in alerts}
    if len(values) != 1:
        return None
    (value,) = values
    return value if value is not None and len(value) <= MAX_REF else None


def _label(labels: dict[str, str], label: str | None) -> str | None:
    if label is None:
        return None
    value = _clean(labels.get(label))
    return value if value is not None and len(value) <= MAX_REF else None


def _ci_ref(value: str | None, mapping: AlertMapping) -> CiRef | None:
    if value is None:
        return None
    source = mapping.ci_source if mapping.ci_match == "external_id" else None
    return CiRef(value=value, match=mapping.ci_match, source=source)


def _event_labels(payload: TriggerPayload) -> dict[str, str]:
    """An event's fields as labels: string custom details, then the payload's own fields."""
    labels: dict[str, str] = {}
    if isinstance(payload.custom_details, dict):
        labels.update((k, v) for k, v in payload.custom_details.items() if isinstance(v, str))
    fields = {
        "source": payload.source,
        "component": payload.component,
        "group": payload.group,
        "class": payload.event_class,
    }
    labels.update((k, v) for k, v in fields.items() if v is not None)
    return labels


def _one_line(text: str) -> str:
    return _BLANKS.sub(" ", text).strip()


def _cut(text: str, limit: int, marker: str = "…") -> str:
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


def _title(text: str) -> str:
    return _cut(_one_line(text), MAX_TITLE) or "Alert"


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pairs(labels: dict[str, str]) -> str:
    """`alertname=X, a=b`: alertname first, then by name (as Alertmanager's templates)."""
    names = sorted(labels, key=lambda name: (name != "alertname", name))
    return ", ".join(f"{name}={labels[name]}" for name in names)


def _alertmanager_title(webhook: AlertmanagerWebhook, alerts: list[AlertmanagerAlert]) -> str:
    names = {a.labels.get("alertname") for a in alerts}
    name = _one_line(names.pop() or "") if len(names) == 1 else ""
    summaries = {a.annotations.get("summary") for a in alerts}
    summary = _one_line(summaries.pop() or "") if len(summaries) == 1 else ""
    if not name:
        group = _pairs(webhook.group_labels)
        name = f"Alert group {{{group}}}" if group else "Alertmanager alert group"
    return _title(f"{name}: {summary}" if summary else name)


def _alertmanager_lines(webhook: AlertmanagerWebhook, alerts: list[AlertmanagerAlert]) -> list[str]:
    firing = sum(1 for a in alerts if a.status == "firing")
    lines = [
        f"Alertmanager alert group {webhook.group_key} (receiver {webhook.receiver}): "
        f"{webhook.status}, {firing} firing, {len(alerts) - firing} resolved.",
    ]
    if webhook.external_url:
        lines.append(f"Alertmanager: {webhook.external_url}")
    for alert in alerts:
        lines.append("")
        head = f"[{alert.status}] {alert.labels.get('alertname', '(no alertname)')}"
        if alert.starts_at is not None:
            head += f" since {_iso(alert.starts_at)}"
        if alert.ends_at is not None and alert.status == "resolved":
            head += f", ended {_iso(alert.ends_at)}"
        lines.append(head)
        lines.append(f"  labels: {_pairs(alert.labels)}")
        for name in sorted(alert.annotations):
            lines.append(f"  {name}: {alert.annotations[name]}")
        if alert.generator_url:
            lines.append(f"  source: {alert.generator_url}")
        if alert.fingerprint:
            lines.append(f"  fingerprint: {alert.fingerprint}")
    if webhook.truncated_alerts:
        lines.append("")
        lines.append(f"{webhook.truncated_alerts} more alerts were left out by Alertmanager.")
    return lines


def _event_lines(event: AlertEvent, payload: TriggerPayload) -> list[str]:
    lines = [payload.summary, ""]
    fields = {
        "severity": payload.severity,
        "source": payload.source,
        "component": payload.component,
        "group": payload.group,
        "class": payload.event_class,
        "timestamp": _iso(payload.timestamp) if payload.timestamp is not None else None,
        "client": event.client,
        "client url": event.client_url,
    }
    lines.extend(f"{name}: {value}" for name, value in fields.items() if value)
    for link in event.links:
        lines.append(f"link: {link.text} <{link.href}>" if link.text else f"link: {link.href}")
    if isinstance(payload.custom_details, str):
        lines.append(f"details: {payload.custom_details}")
    elif payload.custom_details:
        lines.append("details:")
        for name in sorted(payload.custom_details):
            lines.append(f"  {name}: {_json(payload.custom_details[name])}")
    return lines


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return "(not shown)"
    return _cut(text, MAX_ANNOTATION_VALUE)


def _bounded_description(lines: list[str]) -> str:
    """The lines joined, at most MAX_DESCRIPTION characters; a cut is marked."""
    parts: list[str] = []
    size = 0
    for line in lines:
        parts.append(line)
        size += len(line) + 1
        if size > MAX_DESCRIPTION:
            break
    return _cut("\n".join(parts), MAX_DESCRIPTION, _TRUNCATED)
