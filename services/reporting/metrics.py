"""Metrics of the reporting service, beside the shared set: its verifiable ledger.

Tenant labels go through `TenantLabel` (METRICS_TENANTS): by default no tenant id appears and
the gauges hold the largest value over all tenants (`_all`), which is what an alert needs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReportingMetrics:
    """Tree sizes, checkpoint age, verification results and gaps of the tenants' logs."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tree_size = Gauge(
            "itsm_ledger_tree_size",
            "Entries in a tenant's verifiable log (the size of its Merkle tree).",
            ["tenant"],
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "itsm_ledger_checkpoint_age_seconds",
            "Seconds since the newest signed checkpoint of a log that has entries it does not"
            " cover yet (0 when every entry is covered); the oldest over the tenants shown.",
            ["tenant"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "itsm_ledger_checkpoints_total",
            "Signed checkpoints written, by trigger (interval, demand).",
            ["trigger"],
            registry=registry,
        )
        self.checkpoint_duration = Histogram(
            "itsm_ledger_checkpoint_duration_seconds",
            "Time to compute and sign one round of checkpoints.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.verifications = Counter(
            "itsm_ledger_verifications_total",
            "Verifications of a log against its signed checkpoints, by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        self.verification_failures = Counter(
            "itsm_ledger_verification_failures_total",
            "Verifications that found a log not matching its signed checkpoints or its entries.",
            registry=registry,
        )
        self.gaps = Counter(
            "itsm_ledger_gaps_detected_total",
            "Gaps found in what the ledger received, by kind (version_gap, missing_event).",
            ["kind"],
            registry=registry,
        )
        self.open_gaps = Gauge(
            "itsm_ledger_open_gaps",
            "Aggregates whose events the ledger is missing now.",
            registry=registry,
        )
        # Service reports (README "Service reports").
        self.reports_generated = Counter(
            "itsm_reports_generated_total",
            "Reports generated and kept, by kind (service_report, management_review) and"
            " trigger (schedule, on_demand).",
            ["kind", "trigger"],
            registry=registry,
        )
        self.report_duration = Histogram(
            "itsm_report_generation_duration_seconds",
            "Time to generate one report (figures, every format, storing it), by kind.",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
        # Service level management (application/service_levels.py).
        self.availability = Gauge(
            "itsm_reporting_service_availability_ratio",
            "Availability (0..1) of a business service in the period in progress (day, week,"
            " month), as far as it has run; the most critical services only"
            " (REPORTING_AVAILABILITY_METRIC_SERVICES per period).",
            ["service", "period"],
            registry=registry,
        )
        self.improvement_opened = Counter(
            "itsm_reporting_improvement_actions_opened_total",
            "Improvement actions opened, by source (sla_target_missed, availability_target_missed,"
            " audit_finding, manual).",
            ["source"],
            registry=registry,
        )
        self.improvement_closed = Counter(
            "itsm_reporting_improvement_actions_closed_total",
            "Improvement actions closed, by status (done, cancelled).",
            ["status"],
            registry=registry,
        )
        self.improvement_actions = Gauge(
            "itsm_reporting_improvement_actions",
            "Improvement actions of every tenant not closed (state=open: open or in progress) and"
            " those of them past their due date (state=overdue).",
            ["state"],
            registry=registry,
        )
        self.projection_failures = Counter(
            "itsm_reporting_projection_failures_total",
            "A tenant's share of a projection round that failed (projection: kpi-projection,"
            " service-level-projections, service-level-review); the other tenants' went on. The"
            " log names the tenant.",
            ["projection"],
            registry=registry,
        )
        self.kpi_value = Gauge(
            "itsm_reporting_kpi_value",
            "A KPI's value for the current day, week or month over every tenant (docs/kpis.md):"
            " per KPI id and period, for the whole (service and priority empty), per business"
            " service (the REPORTING_KPI_METRICS_SERVICES with the most records) and per"
            " priority (P1..P5, incident and request KPIs). No tenant label.",
            ["kpi", "period", "service", "priority"],
            registry=registry,
        )
        self.kpi_tenant_value = Gauge(
            "itsm_reporting_kpi_tenant_value",
            "A KPI's value for the current day, week or month of one tenant: only the tenants"
            " METRICS_TENANTS lists (none by default).",
            ["tenant", "kpi", "period"],
            registry=registry,
        )
        self.kpi_entries = Counter(
            "itsm_reporting_kpi_entries_folded_total",
            "Ledger entries folded into the KPI projection.",
            registry=registry,
        )
