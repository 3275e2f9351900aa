"""What the incident service's HTTP modules share: the metrics of a runtime, a versioned record
as a response with its ETag, and the problem (RFC 9457) for a move the workflow refuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.incident.domain import workflow
from services.incident.metrics import IncidentMetrics
from shared.http.etags import etag
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


def versioned(
    model: type[BaseModel], body: dict[str, Any], status: int = 200, **headers: str
) -> JSONResponse:
    """A record (incident, request, problem) shaped by its output model, with its version as
    the ETag that the next write sends back in If-Match."""
    out = model.model_validate(body).model_dump(mode="json")
    return JSONResponse(out, status_code=status, headers={"ETag": etag(body["version"]), **headers})
