"""CI/CD tools' webhooks into the deployment gate: GitHub, Argo CD notifications, Flux.

Each accepts the payload exactly as its tool sends it and is authenticated by its signature
alone (the tools send no bearer token): the URL names the tenant (`/webhooks/{tenant}/github`),
whose secret for that tool (`PUT /integrations/{tool}`) must verify the delivery, else 401
problem+json. A body that is not what the tool sends is a 422 naming the field.

- GitHub (`X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256`):
  `deployment_protection_rule` is decided by the gate, and the answer carries the review the
  operator's GitHub App posts to `deployment_callback_url` (this service never calls out);
  `deployment_status` records the outcome; `ping` is acknowledged. Deliveries are deduplicated
  on `X-GitHub-Delivery`.
- Argo CD notifications' webhook service (the template in the service README; sync running,
  succeeded, failed), with the secret in the header the operator configured.
- Flux notification-controller's `generic-hmac` provider (`X-Signature: sha256=<hex>`): the
  event JSON (`involvedObject`, `reason`, `message`, `metadata`...).

Argo CD and Flux send no delivery id: a delivery is recognised again by its body's digest.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.change.adapters import deployments as store
from services.change.application import deployments as gate
from services.change.application.uow import ChangeUnitOfWork
from services.change.domain import signatures
from services.change.domain.deployments import DIGEST, Announcement, Artifact
from services.change.entrypoints.http_deployments import DeploymentOut, count
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import FieldError, ValidationFailed
from shared.http.context import TENANT_PATTERN
from shared.http.problems import PROBLEM_BASE, HttpProblem

router = APIRouter(tags=["webhooks"])
Tool = Literal["github", "argocd", "flux"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery whose signature verified: its tenant, body and headers."""

    tenant_id: str
    tool: Tool
    body: bytes
    headers: Mapping[str, str]
    correlation_id: str = ""

    @property
    def context(self) -> RequestContext:
        """The tool acting for the tenant (its name is the actor of what it records)."""
        return RequestContext(self.tenant_id, f"webhook:{self.tool}", self.correlation_id)


def _unsigned(tool: str) -> HttpProblem:
    return HttpProblem(
        401,
        "Unauthorized",
        f"the {tool} delivery's signature does not verify with the tenant's secret",
        type_=PROBLEM_BASE + "webhook-signature",
    )


def signed(tool: Tool) -> Any:
    """A dependency: the delivery, once its signature verifies with the tenant's secret for
    the tool (401 otherwise, the same whether the tenant, the secret or the signature is
    wrong). It stands where `authorize(permission)` stands on other routes."""

    async def dependency(
        request: Request,
        tenant: Annotated[str, Path(pattern=TENANT_PATTERN, description="The tenant.")],
    ) -> Delivery:
        body = await request.body()
        runtime = request.app.state.runtime
        # For the access log and the metrics; an Idempotency-Key is the tool's own.
        request.state.subject = f"webhook:{tool}"
        async with tenant_transaction(runtime.pool, tenant) as conn:
            secret = await store.tool_secret(conn, tenant, tool)
        headers = request.headers
        if secret is None:
            verified = False
        elif tool == "github":
            verified = signatures.valid_hmac(
                secret.secret, body, headers.get(signatures.GITHUB_HEADER)
            )
        elif tool == "flux":
            verified = signatures.valid_hmac(
                secret.secret, body, headers.get(signatures.FLUX_HEADER)
            )
        else:
            name = secret.signature_header or signatures.ARGOCD_DEFAULT_HEADER
            verified = signatures.valid_token(secret.secret, headers.get(name))
        if not verified:
            runtime.metrics.auth_failures.labels(f"webhook-{tool}").inc()
            raise _unsigned(tool)
        request.state.tenant_id = tenant
        correlation = str(getattr(request.state, "correlation_id", "") or "")
        return Delivery(tenant, tool, body, dict(headers), correlation)

    dependency.permission = f"webhook:{tool}"  # type: ignore[attr-defined]
    dependency.signed = True  # type: ignore[attr-defined]
    return Depends(dependency)


class _Lenient(BaseModel):
    # A tool's payload has many fields we do not read; they are not an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _parse(model: type[M], body: bytes) -> M:
    """The body as the tool's payload, or 422 naming each field that is not what it sends."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()
        ]
        raise ValidationFailed(errors) from None


class WebhookOut(BaseModel):
    """What a webhook delivery did."""

    recorded: bool = Field(description="Whether the delivery decided or recorded a deployment.")
    replayed: bool = Field(description="A redelivery: nothing was done again.")
    deployment: DeploymentOut | None
    github_review: dict[str, str] | None = Field(
        default=None,
        description="GitHub: the body the operator's GitHub App posts to the"
        " deployment_callback_url (environment_name, state, comment); none while awaiting.",
    )


_COMMON = {
    "responses": {
        200: {"description": "The delivery was handled (or recognised as a redelivery)."},
        401: {"description": "The signature does not verify with the tenant's secret."},
        503: {"description": "The database cannot be reached now; the tool retries."},
    },
    "response_model": WebhookOut,
}


def _json_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }


def _view(deployment: store.Deployment | None) -> dict[str, Any] | None:
    return gate.deployment_view(deployment) if deployment is not None else None


def _review(deployment: store.Deployment) -> dict[str, str] | None:
    if deployment.decision == "awaiting":
        return None
    words = "; ".join(r["detail"] for r in deployment.reasons) or "the change gate allows it"
    return {
        "environment_name": deployment.environment,
        "state": "approved" if deployment.decision == "allowed" else "rejected",
        "comment": f"ITSM deployment gate: {deployment.decision}: {words}"[:1000],
    }


async def _replayed(
    uow: ChangeUnitOfWork, delivery: Delivery, delivery_id: str
) -> dict[str, Any] | None:
    """None for a new delivery; the answer to a redelivery otherwise."""
    claimed = await store.claim_delivery(
        uow.conn, delivery.tenant_id, delivery.tool, delivery_id, datetime.now(UTC)
    )
    if claimed is True:
        return None
    deployment = (
        await store.get(uow.conn, delivery.tenant_id, claimed)
        if isinstance(claimed, uuid.UUID)
        else None
    )
    review = _review(deployment) if deployment is not None and delivery.tool == "github" else None
    return {
        "recorded": False,
        "replayed": True,
        "deployment": _view(deployment),
        "github_review": review,
    }


# --- GitHub ---------------------------------------------------------------------------------


class GitHubRepository(_Lenient):
    """The repository of a GitHub event."""

    full_name: str = Field(min_length=1, max_length=200)


class GitHubDeployment(_Lenient):
    """A GitHub deployment: its id numbers the pipeline's deployments."""

    id: int = Field(ge=0)
    sha: str | None = None
    environment: str | None = None
    # What the workflow or app that made the deployment put in it (an object, or text).
    payload: dict[str, Any] | str | None = None


class GitHubProtectionRule(_Lenient):
    """`deployment_protection_rule` (action `requested`)."""

    action: str
    environment: str = Field(min_length=1, max_length=200)
    deployment_callback_url: str = Field(min_length=1, max_length=2000)
    deployment: GitHubDeployment
    repository: GitHubRepository


class GitHubStatus(_Lenient):
    """The `deployment_status` of a `deployment_status` event."""

    state: str
    log_url: str | None = None
    target_url: str | None = None
    environment: str | None = None
    created_at: AwareDatetime | None = None


class GitHubDeploymentStatus(_Lenient):
    """`deployment_status` (action `created`)."""

    action: str
    deployment_status: GitHubStatus
    deployment: GitHubDeployment
    repository: GitHubRepository


# GitHub's deployment states -> the gate's outcomes; the others are progress, not outcomes.
GITHUB_OUTCOMES: Mapping[str, str] = {
    "success": "succeeded",
    "failure": "failed",
    "error": "failed",
}


def _from_payload(payload: dict[str, Any] | str | None) -> dict[str, Any]:
    """What a deployment's own payload says of the change, services, CIs and artifacts."""
    if not isinstance(payload, dict):
        return {}
    found: dict[str, Any] = {}
    errors: list[FieldError] = []
    try:
        if payload.get("change_id"):
            found["change_id"] = uuid.UUID(str(payload["change_id"]))
    except ValueError:
        errors.append(FieldError("deployment.payload.change_id", "not a change id"))
    services = payload.get("services") or []
    if isinstance(services, list) and all(isinstance(s, str) for s in services):
        found["services"] = tuple(services)
    try:
        found["ci_ids"] = tuple(uuid.UUID(str(c)) for c in payload.get("ci_ids") or [])
    except ValueError:
        errors.append(FieldError("deployment.payload.ci_ids", "not CI ids"))
    if errors:
        raise ValidationFailed(errors)
    return found


def _github_announcement(
    repository: GitHubRepository, deployment: GitHubDeployment, environment: str
) -> Announcement:
    return Announcement(
        pipeline=f"github:{repository.full_name}",
        environment=environment,
        sequence=deployment.id,
        source="github",
        commit=deployment.sha,
        **_from_payload(deployment.payload),
    )


@router.post(
    "/webhooks/{tenant}/github",
    summary="GitHub: deployment_protection_rule (decide) and deployment_status (record)",
    openapi_extra={
        **_json_body("The event's payload as GitHub sends it."),
        "parameters": [
            {
                "name": "X-GitHub-Event",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "name": "X-GitHub-Delivery",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "name": "X-Hub-Signature-256",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
    },
    **_COMMON,  # type: ignore[arg-type]
)
async def github_webhook(
    request: Request, delivery: Annotated[Delivery, signed("github")]
) -> dict[str, Any]:
    kind = delivery.headers.get("x-github-event", "")
    delivery_id = delivery.headers.get("x-github-delivery", "")
    if not delivery_id or len(delivery_id) > 200:
        raise ValidationFailed([FieldError("X-GitHub-Delivery", "required", "header")])
    if kind == "ping":
        return {"recorded": False, "replayed": False, "deployment": None}
    if kind not in ("deployment_protection_rule", "deployment_status"):
        raise ValidationFailed(
            [
                FieldError(
                    "X-GitHub-Event",
                    "deployment_protection_rule, deployment_status or ping",
                    "header",
                )
            ]
        )
    runtime = request.app.state.runtime
    async with ChangeUnitOfWork(runtime.pool, delivery.context) as uow:
        replay = await _replayed(uow, delivery, delivery_id)
        if replay is not None:
            return replay
        if kind == "deployment_protection_rule":
            rule = _parse(GitHubProtectionRule, delivery.body)
            announcement = _github_announcement(rule.repository, rule.deployment, rule.environment)
            done = await gate.tool_event(
                gate.default_gate(),
                uow,
                announcement,
                numbered=True,
                status=None,
                at=datetime.now(UTC),
                log_url=None,
                external={
                    "github_deployment_id": rule.deployment.id,
                    "deployment_callback_url": rule.deployment_callback_url,
                },
            )
        else:
            event = _parse(GitHubDeploymentStatus, delivery.body)
            environment = event.deployment_status.environment or event.deployment.environment
            if not environment:
                raise ValidationFailed([FieldError("deployment_status.environment", "required")])
            outcome = GITHUB_OUTCOMES.get(event.deployment_status.state)
            done = await gate.tool_event(
                gate.default_gate(),
                uow,
                _github_announcement(event.repository, event.deployment, environment),
                numbered=True,
                status=outcome,
                at=event.deployment_status.created_at or datetime.now(UTC),
                log_url=event.deployment_status.log_url or event.deployment_status.target_url,
                external={"github_deployment_id": event.deployment.id},
            )
        await store.delivery_touched(
            uow.conn, delivery.tenant_id, "github", delivery_id, done.deployment.id
        )
    if done.created:
        count(runtime, done.deployment, "github")
    return {
        "recorded": True,
        "replayed": False,
        "deployment": _view(done.deployment),
        "github_review": _review(done.deployment) if kind == "deployment_protection_rule" else None,
    }


# --- Argo CD --------------------------------------------------------------------------------


class ArgoCdSync(_Lenient):
    """The body of the Argo CD notifications template in the service README."""

    app: str = Field(min_length=1, max_length=200)
    environment: str = Field(min_length=1, max_length=200)
    revision: str = Field(min_length=1, max_length=200)
    phase: str = Field(description="operationState.phase: Running, Succeeded, Failed, Error")
    finishedAt: AwareDatetime | None = None
    changeId: str | None = None
    images: list[str] = Field(default_factory=list)

    @field_validator("finishedAt", "changeId", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        # A Go template renders a field the application does not have (no finish time while
        # the sync runs, no change annotation) as "" or "<no value>": not given.
        return None if value in ("", "<no value>") else value


ARGOCD_OUTCOMES: Mapping[str, str | None] = {
    "Running": None,
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "failed",
}


def _images(images: list[str]) -> tuple[Artifact, ...]:
    """Images pinned by digest (`repo@sha256:...`, as Argo CD's summary lists them)."""
    found = []
    for image in images:
        name, _, digest = image.partition("@")
        if DIGEST.match(digest):
            repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "")
            found.append(Artifact(repo or name, tag or digest[7:19], digest))
    return tuple(found)


def _change_id(value: str | None, field: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed([FieldError(field, "not a change id")]) from None


@router.post(
    "/webhooks/{tenant}/argocd",
    summary="Argo CD notifications: an application's sync running, succeeded or failed",
    openapi_extra=_json_body("The body of the Argo CD template (see the service README)."),
    **_COMMON,  # type: ignore[arg-type]
)
async def argocd_webhook(
    request: Request, delivery: Annotated[Delivery, signed("argocd")]
) -> dict[str, Any]:
    sync = _parse(ArgoCdSync, delivery.body)
    if sync.phase not in ARGOCD_OUTCOMES:
        raise ValidationFailed([FieldError("phase", f"one of {', '.join(ARGOCD_OUTCOMES)}")])
    announcement = Announcement(
        pipeline=f"argocd:{sync.app}",
        environment=sync.environment,
        sequence=0,
        source="argocd",
        commit=sync.revision,
        change_id=_change_id(sync.changeId, "changeId"),
        artifacts=_images(sync.images),
    )
    return await _unnumbered(
        request, delivery, announcement, ARGOCD_OUTCOMES[sync.phase], sync.finishedAt, None
    )


async def _unnumbered(
    request: Request,
    delivery: Delivery,
    announcement: Announcement,
    outcome: str | None,
    at: datetime | None,
    log_url: str | None,
) -> dict[str, Any]:
    runtime = request.app.state.runtime
    delivery_id = "sha256:" + hashlib.sha256(delivery.body).hexdigest()
    async with ChangeUnitOfWork(runtime.pool, delivery.context) as uow:
        replay = await _replayed(uow, delivery, delivery_id)
        if replay is not None:
            return replay
        done = await gate.tool_event(
            gate.default_gate(),
            uow,
            announcement,
            numbered=False,
            status=outcome,
            at=at or datetime.now(UTC),
            log_url=log_url,
            external={},
        )
        await store.delivery_touched(
            uow.conn, delivery.tenant_id, delivery.tool, delivery_id, done.deployment.id
        )
    if done.created:
        count(runtime, done.deployment, delivery.tool)
    return {"recorded": True, "replayed": False, "deployment": _view(done.deployment)}


# --- Flux -----------------------------------------------------------------------------------


class FluxObject(_Lenient):
    """The Flux object the event is about."""

    kind: str = Field(min_length=1)
    namespace: str = ""
    name: str = Field(min_length=1)


class FluxEvent(_Lenient):
    """An event as Flux's notification-controller sends it to a `generic-hmac` provider."""

    involvedObject: FluxObject
    severity: str
    timestamp: AwareDatetime
    message: str
    reason: str
    metadata: dict[str, str] = Field(default_factory=dict)
    reportingController: str = ""


def _meta(metadata: Mapping[str, str], key: str) -> str | None:
    """A metadata value by key, with or without the API group prefix Flux may put on it."""
    if key in metadata:
        return metadata[key]
    return next((v for k, v in metadata.items() if k.rsplit("/", 1)[-1] == key), None)


def _flux_outcome(event: FluxEvent) -> tuple[bool, str | None]:
    """(whether the event is a deployment at all, its outcome when it has one)."""
    if event.severity == "error":
        return True, "failed"
    if event.reason == "ReconciliationSucceeded":
        return True, "succeeded"
    if event.reason == "Progressing":
        return True, None
    return False, None


@router.post(
    "/webhooks/{tenant}/flux",
    summary="Flux notification-controller (generic-hmac): reconciliations as deployments",
    openapi_extra={
        **_json_body("The event as Flux sends it."),
        "parameters": [
            {"name": "X-Signature", "in": "header", "required": True, "schema": {"type": "string"}}
        ],
    },
    **_COMMON,  # type: ignore[arg-type]
)
async def flux_webhook(
    request: Request, delivery: Annotated[Delivery, signed("flux")]
) -> dict[str, Any]:
    event = _parse(FluxEvent, delivery.body)
    environment = _meta(event.metadata, "environment")
    if not environment:
        raise ValidationFailed(
            [FieldError("metadata.environment", "set it in the Alert's eventMetadata")]
        )
    deployment, outcome = _flux_outcome(event)
    if not deployment:
        return {"recorded": False, "replayed": False, "deployment": None}
    obj = event.involvedObject
    announcement = Announcement(
        pipeline=f"flux:{obj.kind}/{obj.namespace}/{obj.name}",
        environment=environment,
        sequence=0,
        source="flux",
        commit=_meta(event.metadata, "revision"),
        change_id=_change_id(_meta(event.metadata, "change_id"), "metadata.change_id"),
    )
    return await _unnumbered(request, delivery, announcement, outcome, event.timestamp, None)
