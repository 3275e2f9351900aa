"""What the incident service's HTTP modules share: the metrics of a runtime, and the problem
(RFC 9457) for a move the workflow refuses."""

from __future__ import annotations

from collections.abc import Mapping

from services.incident.domain import workflow
from services.incident.metrics import IncidentMetrics
from shared.http.problems import Problem, invalid
from shared.service import ServiceRuntime


def metrics_of(runtime: ServiceRuntime) -> IncidentMetrics | None:
    """The incident service's own metrics (None in a runtime without them)."""
    metrics = runtime.service_metrics
    return metrics if isinstance(metrics, IncidentMetrics) else None


def workflow_problem(
    exc: workflow.WorkflowError, *, field: str = "to", hints: Mapping[str, str] | None = None
) -> Problem:
    """409 naming the allowed moves (also as `allowed`), 422 naming each missing or invalid
    detail (with a hint where the caller should go instead), 409 for a major incident closed
    without its review; `field` is the body field that asked for the move."""
    if isinstance(exc, workflow.IllegalTransition):
        return Problem(
            409,
            "Conflict",
            str(exc),
            errors=[
                {
                    "in": "body",
                    "field": field,
                    "detail": "allowed: " + (", ".join(exc.allowed) or "none (final state)"),
                }
            ],
            allowed=list(exc.allowed),
        )
    if isinstance(exc, workflow.InvalidTransitionDetails):
        hints = hints or {}
        return invalid(
            [
                {"in": "body", "field": name, "detail": why + hints.get(name, "")}
                for name, why in exc.problems.items()
            ]
        )
    if isinstance(exc, workflow.MajorReviewMissing):
        return Problem(
            409,
            "Conflict",
            str(exc),
            errors=[{"in": "body", "field": field, "detail": "record the major-incident review"}],
        )
    return invalid([{"in": "body", "field": field, "detail": str(exc)}])
