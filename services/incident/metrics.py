"""Metrics of the incident service, beside the shared set (`shared/metrics.py`).

Labels take values from small fixed sets only (priorities, states, record and clock kinds,
alert sources, suggestion bases); never an id, so the series count stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Time to resolve: from minutes (a quick fix) to weeks (a long-running low priority).
RESOLVE_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    2 * 3600.0,
    4 * 3600.0,
    8 * 3600.0,
    24 * 3600.0,
    2 * 86400.0,
    3 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
)
# SLA detection delay: the scheduler's goal is well under 2 s; an outage shows up in the tail.
DETECTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def late_label(late: bool) -> str:
    """The `late` label value of an SLA event."""
    return "true" if late else "false"


class IncidentMetrics:
    """Incidents, SLA warnings and breaches, alert intake, problem and change correlation."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.incidents_open = Gauge(
            "itsm_incident_open",
            "Open incidents (not resolved, closed or cancelled) by priority (P1-P5) and state,"
            " refreshed by the census loop.",
            ["priority", "state"],
            registry=registry,
        )
        self.incidents_created = Counter(
            "itsm_incident_created",
            "Incidents logged, by origin (manual, alertmanager, events).",
            ["origin"],
            registry=registry,
        )
        self.incidents_resolved = Counter(
            "itsm_incident_resolved",
            "Incidents resolved.",
            registry=registry,
        )
        self.time_to_resolve = Histogram(
            "itsm_incident_time_to_resolve_seconds",
            "Wall-clock time from logging an incident to resolving it.",
            buckets=RESOLVE_BUCKETS,
            registry=registry,
        )
        self.sla_warnings = Counter(
            "itsm_sla_warnings",
            "SLA clocks that reached their warning threshold, by record (incident, request),"
            " clock kind (response, resolution) and whether the event fired late.",
            ["record", "kind", "late"],
            registry=registry,
        )
        self.sla_breaches = Counter(
            "itsm_sla_breaches",
            "SLA clocks that reached their target, by record (incident, request), clock kind"
            " (response, resolution) and whether the event fired late.",
            ["record", "kind", "late"],
            registry=registry,
        )
        self.sla_detection_delay = Histogram(
            "itsm_sla_detection_delay_seconds",
            "Time from an SLA warning or breach falling due to the scheduler committing its event.",
            buckets=DETECTION_BUCKETS,
            registry=registry,
        )
        self.alerts_received = Counter(
            "itsm_alerts_received",
            "Alerts received from monitoring, by source (alertmanager, ...).",
            ["source"],
            registry=registry,
        )
        self.alerts_deduplicated = Counter(
            "itsm_alerts_deduplicated",
            "Alerts folded into an incident already open for the same alert, by source.",
            ["source"],
            registry=registry,
        )
        self.alert_incidents_opened = Counter(
            "itsm_alert_incidents_opened",
            "Incidents opened by an alert, by source.",
            ["source"],
            registry=registry,
        )
        self.alert_incidents_resolved = Counter(
            "itsm_alert_incidents_resolved",
            "Incidents resolved because their alert resolved, by source.",
            ["source"],
            registry=registry,
        )
        self.requests_submitted = Counter(
            "itsm_requests_submitted",
            "Service requests submitted, by whether they need approval (true, false).",
            ["needs_approval"],
            registry=registry,
        )
        self.request_decisions = Counter(
            "itsm_request_decisions",
            "Approval decisions on service requests, by decision (approved, rejected).",
            ["decision"],
            registry=registry,
        )
        self.requests_fulfilled = Counter(
            "itsm_requests_fulfilled",
            "Service requests fulfilled.",
            registry=registry,
        )
        self.time_to_fulfil = Histogram(
            "itsm_request_time_to_fulfil_seconds",
            "Wall-clock time from submitting a service request to fulfilling it.",
            buckets=RESOLVE_BUCKETS,
            registry=registry,
        )
        self.problem_suggestions = Counter(
            "itsm_problem_suggestions",
            "Problems suggested from recurring incidents, by basis (ci, service).",
            ["basis"],
            registry=registry,
        )
        self.change_correlations = Counter(
            "itsm_change_correlations",
            "Incidents flagged as possibly caused by a recent change on their CI.",
            registry=registry,
        )
        self.surveys_sent = Counter(
            "itsm_surveys_sent",
            "Satisfaction surveys offered, by record (incident, request).",
            ["record"],
            registry=registry,
        )
        self.surveys_answered = Counter(
            "itsm_surveys_answered",
            "Satisfaction surveys answered, by record (incident, request) and score (1-5).",
            ["record", "score"],
            registry=registry,
        )
        self.survey_refusals = Counter(
            "itsm_survey_refusals",
            "Survey link requests refused, by reason (invalid: unknown, tampered or another"
            " key's token; expired; answered: a second answer).",
            ["reason"],
            registry=registry,
        )
        self.outages_recorded = Counter(
            "itsm_outages_recorded",
            "Outages of business services recorded, by kind (outage, degradation).",
            ["kind"],
            registry=registry,
        )

    def sla_fired(self, event: str, record: str, kind: str, late: bool) -> None:
        """Count an SLA `warning` or `breach` event of a clock."""
        counter = self.sla_warnings if event == "warning" else self.sla_breaches
        counter.labels(record, kind, late_label(late)).inc()
