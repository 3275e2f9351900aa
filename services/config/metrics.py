"""Metrics of the config service, beside the shared set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConfigMetrics:
    """Impact analysis timing, CIs by class and status, import outcomes and drift."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.impact_duration = Histogram(
            "itsm_config_impact_query_duration_seconds",
            "Impact analysis (recursive walk of the CI graph) duration, by direction.",
            ["direction"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.cis = Gauge(
            "itsm_config_cis",
            "Configuration items by class and status (tenant-defined classes as `custom`),"
            " refreshed every CONFIG_CENSUS_INTERVAL_SECONDS.",
            ["class", "status", "tenant"],
            registry=registry,
        )
        self.import_rows = Counter(
            "itsm_config_import_rows_total",
            "Discovery import rows by outcome (created, updated, unchanged, drift, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.drift_events = Counter(
            "itsm_config_drift_events_total",
            "Controlled CIs found different from their record by a discovery import.",
            registry=registry,
        )
        self.imports = Counter(
            "itsm_config_imports_total",
            "Discovery imports finished, by status (completed, failed).",
            ["status"],
            registry=registry,
        )
