"""HTTP API of alert intake: Alertmanager webhooks and PagerDuty-style events (role integration).

Both bodies are read from the request and validated here rather than declared as FastAPI body
parameters: monitoring tools add fields of their own (Grafana's `orgId`, PagerDuty's
`routing_key`...), which the alert models ignore, while the shared app refuses body models that
do not forbid unknown fields. A body that fails validation gets the same 422 problem as any
other, naming each field (`dedup_key`, `version`, `alerts.0.labels`...); invalid JSON too.

Alertmanager retries a notification on 5xx and not on 4xx, which is what these answers mean.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from services.incident.application.alerts import AlertReceipt, Outcome, receive_alert
from services.incident.domain.alerts import (
    AlertEvent,
    AlertmanagerWebhook,
    intent_from_alertmanager,
    intent_from_event,
)
from services.incident.entrypoints.common import metrics_of
from shared.context import RequestContext
from shared.http.context import authorize
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["alerts"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]
Ingest = Annotated[RequestContext, authorize("alert:ingest")]

M = TypeVar("M", bound=BaseModel)

_OUTCOMES = (
    "What the notification did: `opened` an incident for the group (a new group, or one whose"
    " incident is closed or cancelled); `updated` the group's open incident, or left it"
    " `unchanged` when nothing was new; `reopened` its resolved incident; `acknowledged` it"
    " (new → in_progress); `resolved` it (the tenant's mapping has auto_resolve); `noted` it"
    " (a work note only); `ignored` an acknowledge or resolve for a group without incident."
)


class AlertAccepted(BaseModel):
    """What an alert notification did (both endpoints)."""

    status: Literal["success"] = "success"
    message: str = Field(description="A sentence for the tool's logs.")
    action: Outcome = Field(description=_OUTCOMES)
    dedup_key: str = Field(
        description="The group's key: the event's own, one derived from the payload, or the"
        " SHA-256 of Alertmanager's receiver and group key. Send it to acknowledge or resolve."
    )
    incident_id: uuid.UUID | None = Field(description="The group's incident (None if ignored).")
    reference: str | None = Field(description="The incident's INC<number>.")
    alerts: int = Field(description="Alerts the notification carried (1 for an event).")


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined (OpenAPI resolves `#/...` elsewhere)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)
    return resolved


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = _inline(model.model_json_schema(by_alias=True))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _parse(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or the shared 422 naming the offending fields."""
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


def _accepted(receipt: AlertReceipt, status: int) -> JSONResponse:
    if receipt.reference is not None:
        message = f"{receipt.outcome}: {receipt.reference}"
    else:
        message = f"{receipt.outcome}: no incident for this dedup key"
    body = AlertAccepted(
        message=message,
        action=receipt.outcome,
        dedup_key=receipt.dedup_key,
        incident_id=receipt.incident_id,
        reference=receipt.reference,
        alerts=receipt.alerts,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


@router.post(
    "/integrations/alertmanager",
    response_model=AlertAccepted,
    summary="Receive an Alertmanager webhook notification (version 4): one incident per group",
    openapi_extra=_body_schema(AlertmanagerWebhook),
)
async def post_alertmanager(request: Request, context: Ingest, runtime: Runtime) -> JSONResponse:
    webhook = await _parse(request, AlertmanagerWebhook)
    receipt = await receive_alert(
        runtime.pool,
        partial(intent_from_alertmanager, webhook),
        context,
        metrics=metrics_of(runtime),
    )
    return _accepted(receipt, 200)


@router.post(
    "/integrations/events",
    status_code=202,
    response_model=AlertAccepted,
    summary="Receive a trigger, acknowledge or resolve event (PagerDuty Events API v2 style)",
    openapi_extra=_body_schema(AlertEvent),
)
async def post_event(request: Request, context: Ingest, runtime: Runtime) -> JSONResponse:
    event = await _parse(request, AlertEvent)
    receipt = await receive_alert(
        runtime.pool, partial(intent_from_event, event), context, metrics=metrics_of(runtime)
    )
    return _accepted(receipt, 202)
