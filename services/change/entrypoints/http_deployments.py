"""The deployment gate over HTTP (ISO/IEC 20000-1 8.5.3): pipelines announce deployments and
get a decision with a URL to poll, record outcomes; tenant admins set which environments are
production and the tools' webhook secrets. Thin handlers: the use cases are
`application/deployments.py`; refusals are the typed errors of `shared/errors.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from services.change.adapters import deployments as store
from services.change.adapters.deployments import GateSettings
from services.change.application import deployments as gate
from services.change.application.uow import ChangeUnitOfWork
from services.change.domain.deployments import Announcement, Artifact
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody

router = APIRouter(tags=["deployments"])
Runtime = records.Runtime
Tool = Literal["github", "argocd", "flux"]
_NAME = r"^[\x21-\x7e][\x20-\x7e]{0,199}$"


class ArtifactIn(RequestBody):
    """An artifact deployed: name, version, content digest."""

    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=200)
    digest: str = Field(min_length=1, max_length=100, description="sha256:<64 lowercase hex>")


class NewDeployment(RequestBody):
    """Body of POST /deployments: what a pipeline is about to deploy."""

    pipeline: str = Field(pattern=_NAME, description="The pipeline's name, stable across runs.")
    environment: str = Field(pattern=_NAME)
    sequence: int = Field(ge=0, le=2**62, description="The pipeline's run number.")
    services: list[str] = Field(default_factory=list, max_length=100)
    ci_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    artifacts: list[ArtifactIn] = Field(default_factory=list, max_length=100)
    commit: str | None = Field(default=None, min_length=1, max_length=100)
    change_id: uuid.UUID | None = None
    release_id: uuid.UUID | None = None


class StatusIn(RequestBody):
    """Body of POST /deployments/{id}/status."""

    status: Literal["succeeded", "failed", "rolled_back"]
    at: AwareDatetime | None = Field(default=None, description="When; now when not given.")
    log_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2000)


class ReasonOut(BaseModel):
    """One reason for a decision."""

    code: str
    detail: str
    ci_ids: list[str]


class DeploymentOut(BaseModel):
    """A deployment, the gate's decision and its outcome."""

    id: uuid.UUID
    pipeline: str
    environment: str
    sequence: int
    source: str
    services: list[str]
    ci_ids: list[uuid.UUID]
    artifacts: list[dict[str, str]]
    commit: str | None
    change_id: uuid.UUID | None
    release_id: uuid.UUID | None
    registered: str | None = Field(
        description="standard or unauthorized: the change it registered."
    )
    decision: Literal["allowed", "prevented", "awaiting"]
    reasons: list[ReasonOut]
    decided_at: datetime
    status: Literal["announced", "succeeded", "failed", "rolled_back"]
    status_at: datetime | None
    log_url: str | None
    external: dict[str, Any]
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    poll_url: str = Field(description="GET it to see the decision again (awaiting is re-decided).")


class GateSettingsIn(RequestBody):
    """Body of PUT /gate-settings."""

    production_environments: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        min_length=1, max_length=50
    )
    release_environments: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        min_length=1, max_length=20, description="The order releases are promoted in."
    )


class GateSettingsOut(BaseModel):
    """The tenant's gate settings in force, with their version (0: the defaults, never saved)."""

    production_environments: list[str]
    release_environments: list[str]
    version: int


class SecretIn(RequestBody):
    """Body of PUT /integrations/{tool}: the webhook secret (never shown back)."""

    secret: str = Field(min_length=16, max_length=500, pattern=r"^[\x21-\x7e]+$")
    signature_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,100}$",
        description="Argo CD: the header carrying the secret (default X-Argocd-Signature).",
    )


class IntegrationOut(BaseModel):
    """A tool's integration, its secret withheld."""

    tool: Tool
    secret_set: bool
    signature_header: str | None
    updated_at: datetime | None
    updated_by: str | None
    webhook_path: str


def _out(deployment: store.Deployment) -> dict[str, Any]:
    return DeploymentOut.model_validate(gate.deployment_view(deployment)).model_dump(mode="json")


def announcement_of(body: NewDeployment, source: str = "api") -> Announcement:
    """The use case's announcement from the API body."""
    return Announcement(
        pipeline=body.pipeline,
        environment=body.environment,
        sequence=body.sequence,
        source=source,  # type: ignore[arg-type]
        services=tuple(dict.fromkeys(body.services)),
        ci_ids=tuple(dict.fromkeys(body.ci_ids)),
        artifacts=tuple(Artifact(a.name, a.version, a.digest) for a in body.artifacts),
        commit=body.commit,
        change_id=body.change_id,
        release_id=body.release_id,
    )


def count(runtime: Any, deployment: store.Deployment, source: str) -> None:
    """Count the decision (and an unauthorized change it registered)."""
    metrics = runtime.service_metrics
    metrics.gate_decisions.labels(deployment.decision, source).inc()
    if deployment.registered is not None:
        metrics.changes_created.labels(
            "standard" if deployment.registered == "standard" else "normal",
            "deployment" if deployment.registered == "standard" else "unauthorized",
        ).inc()
    if deployment.registered == "unauthorized":
        metrics.unauthorized.labels("deployment").inc()


@router.post(
    "/deployments",
    status_code=201,
    response_model=DeploymentOut,
    summary="Announce a deployment and get the gate's decision",
    responses={
        200: {"model": DeploymentOut, "description": "Announced before: the same deployment"},
        404: {"description": "The release named does not exist"},
        409: {"description": "This (pipeline, environment, sequence) was announced otherwise"},
    },
)
async def announce_deployment(
    body: NewDeployment,
    context: Annotated[RequestContext, authorize("deployment:announce")],
    runtime: Runtime,
) -> JSONResponse:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        done = await gate.announce(gate.default_gate(), uow, announcement_of(body))
    if done.created:
        count(runtime, done.deployment, "api")
    location = f"/deployments/{done.deployment.id}"
    return JSONResponse(
        _out(done.deployment),
        status_code=201 if done.created else 200,
        headers={"Location": location},
    )


@router.get(
    "/deployments/{deployment_id}",
    response_model=DeploymentOut,
    summary="Poll a deployment: its decision (awaiting is decided again) and outcome",
)
async def get_deployment(
    deployment_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("deployment:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        before = await store.get(uow.conn, uow.tenant_id, deployment_id)
        deployment = await gate.poll(gate.default_gate(), uow, deployment_id)
    if before is not None and deployment.version != before.version:
        runtime.service_metrics.gate_decisions.labels(deployment.decision, deployment.source).inc()
    return _out(deployment)


@router.post(
    "/deployments/{deployment_id}/status",
    response_model=DeploymentOut,
    summary="Record a deployment's outcome",
    responses={409: {"description": "The deployment's status cannot take this one"}},
)
async def record_deployment_status(
    deployment_id: uuid.UUID,
    body: StatusIn,
    context: Annotated[RequestContext, authorize("deployment:announce")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        deployment = await gate.record_status_by_id(
            uow, deployment_id, body.status, at=body.at or datetime.now(UTC), log_url=body.log_url
        )
    return _out(deployment)


@router.get(
    "/changes/{change_id}/deployments",
    response_model=list[DeploymentOut],
    summary="A change's deployments, oldest first",
)
async def list_change_deployments(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("deployment:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        found = await gate.change_deployments(uow, change_id)
    return [_out(d) for d in found]


def _settings_response(settings: GateSettings) -> JSONResponse:
    body = {**settings.as_json(), "version": settings.version}
    return JSONResponse(body, headers={"ETag": etag(settings.version)})


@router.get(
    "/gate-settings",
    response_model=GateSettingsOut,
    summary="The gate's settings (the defaults, version 0, until the tenant saves its own)",
)
async def get_gate_settings(
    context: Annotated[RequestContext, authorize("deployment:read")],
    runtime: Runtime,
) -> JSONResponse:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        settings = await store.gate_settings(uow.conn, uow.tenant_id)
    return _settings_response(settings)


@router.put(
    "/gate-settings",
    response_model=GateSettingsOut,
    summary='Set the gate\'s settings (If-Match required; "0" the first time)',
)
async def put_gate_settings(
    body: GateSettingsIn,
    context: Annotated[RequestContext, authorize("integration:configure")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    settings = GateSettings(
        tuple(dict.fromkeys(body.production_environments)),
        tuple(dict.fromkeys(body.release_environments)),
    )
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        stored = await gate.put_settings(uow, settings, expected_version=expected)
    return _settings_response(stored)


def _integration(tenant_id: str, tool: str, found: store.ToolSecret | None) -> dict[str, Any]:
    return {
        "tool": tool,
        "secret_set": found is not None,
        "signature_header": found.signature_header if found else None,
        "updated_at": found.updated_at.isoformat() if found else None,
        "updated_by": found.updated_by if found else None,
        "webhook_path": f"/webhooks/{tenant_id}/{tool}",
    }


@router.put(
    "/integrations/{tool}",
    response_model=IntegrationOut,
    summary="Set a CI/CD tool's webhook secret (never shown back)",
)
async def put_integration(
    tool: Annotated[Tool, Path()],
    body: SecretIn,
    context: Annotated[RequestContext, authorize("integration:configure")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        await store.put_tool_secret(
            uow.conn,
            uow.tenant_id,
            tool,
            body.secret,
            body.signature_header,
            actor=context.actor,
            now=datetime.now(UTC),
        )
        found = await store.tool_secret(uow.conn, uow.tenant_id, tool)
    return _integration(context.tenant_id, tool, found)


@router.get(
    "/integrations/{tool}",
    response_model=IntegrationOut,
    summary="A CI/CD tool's integration (whether its secret is set, never the secret)",
)
async def get_integration(
    tool: Annotated[Tool, Path()],
    context: Annotated[RequestContext, authorize("integration:configure")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        found = await store.tool_secret(uow.conn, uow.tenant_id, tool)
    return _integration(context.tenant_id, tool, found)
