"""What the incident service's HTTP modules share: the metrics of a runtime.

A versioned record's response with its ETag, its routes and its refusals are the shared ones
(`shared/http/records.py`, and the one mapping of typed errors in `shared/http/problems.py`).
"""

from __future__ import annotations

from services.incident.metrics import IncidentMetrics
from shared.service import ServiceRuntime


def metrics_of(runtime: ServiceRuntime) -> IncidentMetrics | None:
    """The incident service's own metrics (None in a runtime without them)."""
    metrics = runtime.service_metrics
    return metrics if isinstance(metrics, IncidentMetrics) else None
