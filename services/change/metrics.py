"""Metrics of the change service, beside the shared set. No record ids in labels; the tenant
label, where there is one, goes through `TenantLabel` (METRICS_TENANTS)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DAYS = (3600.0, 4 * 3600.0, 86400.0, 2 * 86400.0, 7 * 86400.0, 14 * 86400.0, 30 * 86400.0)


class ChangeMetrics:
    """Changes by type and state, outcomes, lead time and approval wait, conflicts, gate
    decisions and unauthorized changes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes_created = Counter(
            "itsm_changes_created_total",
            "Changes raised, by type and origin (manual, problem, deployment, unauthorized);"
            " the emergency share is the emergency rate over the total.",
            ["type", "origin"],
            registry=registry,
        )
        self.changes = Gauge(
            "itsm_changes",
            "Changes by type and state, refreshed by the census task.",
            ["type", "state", "tenant"],
            registry=registry,
        )
        self.transitions = Counter(
            "itsm_change_transitions_total",
            "Change state moves, by type and the state entered.",
            ["type", "to_state"],
            registry=registry,
        )
        self.outcomes = Counter(
            "itsm_change_outcomes_total",
            "Implemented changes by type and outcome; the success rate is successful over all.",
            ["type", "outcome"],
            registry=registry,
        )
        self.lead_time = Histogram(
            "itsm_change_lead_time_seconds",
            "From a change's creation to the end of its implementation, by type.",
            ["type"],
            buckets=_DAYS,
            registry=registry,
        )
        self.approval_wait = Histogram(
            "itsm_change_approval_wait_seconds",
            "From a change entering authorize to its approvals completing (or being refused).",
            ["type", "decision"],
            buckets=_DAYS,
            registry=registry,
        )
        self.approval_escalations = Counter(
            "itsm_change_approval_escalations_total",
            "Approval steps escalated past their deadline (never approved by it).",
            registry=registry,
        )
        self.conflicts = Counter(
            "itsm_change_conflicts_found_total",
            "Conflicts found for change windows, by kind (change, maintenance_window, blackout,"
            " implementer, major_incident).",
            ["kind"],
            registry=registry,
        )
        self.gate_decisions = Counter(
            "itsm_change_gate_decisions_total",
            "Deployment gate decisions, by result (allowed, prevented, awaiting) and source"
            " (api, github, argocd, flux).",
            ["result", "source"],
            registry=registry,
        )
        self.unauthorized = Counter(
            "itsm_change_unauthorized_total",
            "Unauthorized changes opened for review, by how they were found (deployment,"
            " ci_modified, drift).",
            ["found_by"],
            registry=registry,
        )
        self.feed_requests = Counter(
            "itsm_change_schedule_feed_requests_total",
            "Requests to calendar feed tokens' secret URLs, by result: served, or refused (an"
            " unknown, malformed, revoked or other tenant's secret: one answer, 404).",
            ["result"],
            registry=registry,
        )
