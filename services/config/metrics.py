"""Metrics of the config service, beside the shared set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram


class ConfigMetrics:
    """Impact analysis timing (CI counts by class and status and import outcomes follow)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.impact_duration = Histogram(
            "itsm_config_impact_query_duration_seconds",
            "Impact analysis (recursive walk of the CI graph) duration, by direction.",
            ["direction"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
