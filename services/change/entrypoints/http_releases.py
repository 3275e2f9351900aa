"""Releases over HTTP (ISO/IEC 20000-1 8.5.3): plan one, move it, record its deployments per
environment (promotion by digest) and its acceptance or test evidence. Writes to a release
need `If-Match` (its version, the ETag of the last read), as every versioned record's do
(`shared/http/records.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.change.application import releases as use_cases
from services.change.application.uow import ChangeUnitOfWork
from services.change.domain.releases import ReleaseState
from services.change.entrypoints.http_deployments import ArtifactIn
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.service import ServiceRuntime

router = APIRouter(tags=["releases"])
Runtime = records.Runtime
_ENV = r"^[\x21-\x7e][\x20-\x7e]{0,199}$"


class NewRelease(RequestBody):
    """Body of POST /releases."""

    name: str = Field(min_length=1, max_length=200)
    environments: list[Annotated[str, Field(pattern=_ENV)]] | None = Field(
        default=None,
        max_length=20,
        description="The promotion order; the tenant's (GET /gate-settings) when not given.",
    )
    change_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    artifacts: list[ArtifactIn] = Field(min_length=1, max_length=100)


class ReleaseTransition(RequestBody):
    """Body of POST /releases/{id}/transitions."""

    to: ReleaseState
    reason: str | None = Field(
        default=None, max_length=2000, description="For failed, rolled_back and cancelled."
    )


class ReleaseDeploymentIn(RequestBody):
    """Body of POST /releases/{id}/deployments: one deployment to an environment."""

    environment: str = Field(pattern=_ENV)
    status: Literal["succeeded", "failed", "rolled_back"]
    digests: dict[str, str] = Field(
        description="Artifact name -> the digest deployed; for a promotion, the one that"
        " succeeded in the environment before.",
        max_length=100,
    )
    evidence: list[str] = Field(default_factory=list, max_length=50)
    log_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2000)


class EvidenceIn(RequestBody):
    """Body of POST /releases/{id}/evidence."""

    kind: Literal["acceptance", "test"]
    ref: str = Field(max_length=2000, description="A link (https://...) or sha256:<hex>.")
    environment: str | None = Field(default=None, pattern=_ENV)


class ReleaseDeploymentOut(BaseModel):
    """One deployment of a release."""

    environment: str
    status: str
    digests: dict[str, str]
    evidence: list[str]
    log_url: str | None
    deployment_id: uuid.UUID | None
    at: datetime
    by: str


class ReleaseOut(BaseModel):
    """A release as the API returns it."""

    id: uuid.UUID
    reference: str = Field(description="REL<number>, per tenant.")
    number: int
    tenant_id: str
    name: str
    state: str
    environments: list[str]
    changes: list[uuid.UUID]
    artifacts: list[dict[str, str]]
    evidence: list[dict[str, Any]]
    reason: str | None
    deployments: list[ReleaseDeploymentOut]
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


_REFUSES = {409: {"description": "The release's state, or promotion by digest, refuses it"}}


@router.post(
    "/releases",
    status_code=201,
    response_model=ReleaseOut,
    summary="Plan a release",
)
async def create_release(
    body: NewRelease,
    context: Annotated[RequestContext, authorize("release:manage")],
    runtime: Runtime,
) -> JSONResponse:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        release = await use_cases.plan(
            uow,
            name=body.name,
            environments=body.environments,
            changes=body.change_ids,
            artifacts=[a.model_dump() for a in body.artifacts],
        )
    shown = use_cases.release_view(release)
    return records.versioned(ReleaseOut, shown, 201, Location=f"/releases/{release.id}")


async def _read(
    runtime: ServiceRuntime, context: RequestContext, release_id: uuid.UUID
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        release, deployments = await use_cases.get(uow, release_id)
    return use_cases.release_view(release, deployments)


async def _history(
    runtime: ServiceRuntime, context: RequestContext, release_id: uuid.UUID
) -> list[dict[str, Any]]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        return await use_cases.history(uow, release_id)


async def _transition(
    runtime: ServiceRuntime, context: RequestContext, release_id: uuid.UUID, body: Any, version: int
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        await use_cases.move(uow, release_id, version, body.to, body.reason)
    return await _read(runtime, context, release_id)


async def _deploy(
    runtime: ServiceRuntime, context: RequestContext, release_id: uuid.UUID, body: Any, version: int
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        await use_cases.deploy(
            uow,
            release_id,
            version,
            environment=body.environment,
            status=body.status,
            digests=body.digests,
            evidence=body.evidence,
            log_url=body.log_url,
        )
    return await _read(runtime, context, release_id)


async def _evidence(
    runtime: ServiceRuntime, context: RequestContext, release_id: uuid.UUID, body: Any, version: int
) -> dict[str, Any]:
    async with ChangeUnitOfWork(runtime.pool, context) as uow:
        await use_cases.add_evidence(
            uow, release_id, version, kind=body.kind, ref=body.ref, environment=body.environment
        )
    return await _read(runtime, context, release_id)


_routes = records.RecordRoutes(router, "/releases", ident="release_id", model=ReleaseOut)
_routes.read(permission="release:read", read=_read, name="get_release", summary="A release")
_routes.history(permission="release:read", history=_history)
_routes.write(
    "/transitions",
    body=ReleaseTransition,
    permission="release:manage",
    write=_transition,
    name="transition_release",
    summary="Move a release to another state",
    responses=_REFUSES,
)
_routes.write(
    "/deployments",
    body=ReleaseDeploymentIn,
    permission="release:manage",
    write=_deploy,
    name="record_release_deployment",
    summary="Record a deployment of the release to an environment (promotion by digest)",
    responses=_REFUSES,
)
_routes.write(
    "/evidence",
    body=EvidenceIn,
    permission="release:manage",
    write=_evidence,
    name="add_release_evidence",
    summary="Add acceptance or test evidence",
    responses=_REFUSES,
)
