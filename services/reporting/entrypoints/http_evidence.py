"""Evidence exports and auditor samples over HTTP (README "Evidence exports")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.reporting.application import evidence
from services.reporting.domain.clauses import CLAUSE_IDS
from services.reporting.entrypoints.http_log import ReportingRuntime, checkpointer_of
from shared.context import RequestContext
from shared.errors import Conflict
from shared.http.context import authorize
from shared.models import RequestBody
from shared.service import runtime_of

router = APIRouter(tags=["evidence"])
Runtime = Annotated[ReportingRuntime, Depends(runtime_of)]
Exporter = Annotated[RequestContext, authorize("evidence:export")]

CLAUSE_PATTERN = "^(" + "|".join(c.replace(".", r"\.") for c in CLAUSE_IDS) + ")$"


class ExportRequest(RequestBody):
    """An export of the tenant's evidence: the events whose time is in [from, to)."""

    model_config = ConfigDict(populate_by_name=True)

    period_from: datetime = Field(alias="from", description="Start of the period (inclusive).")
    period_to: datetime = Field(alias="to", description="End of the period (exclusive).")
    clauses: list[Annotated[str, Field(pattern=CLAUSE_PATTERN)]] | None = Field(
        default=None,
        max_length=len(CLAUSE_IDS),
        description=f"ISO/IEC 20000-1 clauses wanted (default all: {', '.join(CLAUSE_IDS)}).",
    )


class ExportOut(BaseModel):
    """An export job and its progress."""

    id: uuid.UUID
    state: str = Field(description="queued, running, done or failed")
    period_from: datetime
    period_to: datetime
    clauses: list[str]
    entries_done: int
    entries_total: int
    percent: float
    tree_size: int | None = Field(description="The size of the checkpoint the export holds.")
    first_index: int | None
    previous_tree_size: int | None
    archive_sha256: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def _out(job: Any) -> ExportOut:
    return ExportOut(
        id=job.id,
        state=job.state,
        period_from=job.period_from,
        period_to=job.period_to,
        clauses=job.clauses,
        entries_done=job.entries_done,
        entries_total=job.entries_total,
        percent=job.percent,
        tree_size=job.tree_size,
        first_index=job.first_index,
        previous_tree_size=job.previous_size,
        archive_sha256=job.archive_sha256,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


@router.post(
    "/evidence-exports",
    status_code=202,
    response_model=ExportOut,
    summary="Start an evidence export (a job; follow it at its Location)",
)
async def start_export(
    body: ExportRequest, context: Exporter, runtime: Runtime, response: Response
) -> ExportOut:
    job = await evidence.request_export(
        runtime.pool,
        context.tenant_id,
        body.period_from,
        body.period_to,
        body.clauses,
        context.actor,
    )
    response.headers["Location"] = f"/evidence-exports/{job.id}"
    return _out(job)


@router.get(
    "/evidence-exports/{export_id}", response_model=ExportOut, summary="An export's progress"
)
async def export_progress(export_id: uuid.UUID, context: Exporter, runtime: Runtime) -> ExportOut:
    return _out(await evidence.export_status(runtime.pool, context.tenant_id, export_id))


@router.get(
    "/evidence-exports/{export_id}/archive",
    summary="A finished export's archive (.tar.gz); 409 until it is done",
    response_class=Response,
    responses={
        200: {"content": {"application/gzip": {}}},
        409: {"description": "The export is not done (queued, running or failed)"},
    },
)
async def export_archive(export_id: uuid.UUID, context: Exporter, runtime: Runtime) -> Response:
    job = await evidence.export_status(runtime.pool, context.tenant_id, export_id)
    archive = await evidence.archive_of(runtime.pool, context.tenant_id, job)
    if archive is None:
        raise Conflict(f"the export is {job.state}: its archive exists once it is done")
    return Response(
        archive,
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="evidence-{job.id}.tar.gz"',
            "Digest": f"sha-256={job.archive_sha256}",
        },
    )


class SampledEvent(BaseModel):
    """One event of a sampled record's timeline, with its inclusion proof."""

    leaf_index: int
    event_id: str
    type: str
    version: int
    time: datetime
    actor: str
    data: dict[str, Any]
    leaf_hash: str
    proof: list[str] = Field(description="Base64 RFC 9162 PATH to the checkpoint's root.")


class SampledRecord(BaseModel):
    """A record drawn, and every event of it in the checkpoint's tree."""

    record_id: str
    events: list[SampledEvent]


class SampleOut(BaseModel):
    """A reproducible sample of a clause's records (same seed, same records)."""

    clause: str
    seed: str
    n: int
    population: int = Field(description="How many records the clause has to draw from.")
    tree_size: int
    root_hash: str
    checkpoint: str = Field(description="The signed note every proof leads to.")
    records: list[SampledRecord]


@router.get(
    "/evidence/sample",
    response_model=SampleOut,
    summary="A reproducible random sample of a clause's records with timelines and proofs",
    responses={404: {"description": "No checkpoint of the tenant's log is signed yet"}},
)
async def evidence_sample(
    context: Exporter,
    runtime: Runtime,
    clause: Annotated[str, Query(pattern=CLAUSE_PATTERN, description="e.g. 8.6.1")],
    seed: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")],
    n: Annotated[int, Query(ge=1, le=500)] = 25,
    period_from: Annotated[datetime | None, Query(alias="from")] = None,
    period_to: Annotated[datetime | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    return await evidence.sample(
        runtime.pool,
        context.tenant_id,
        clause,
        n,
        seed,
        period_from=period_from,
        period_to=period_to,
        signer=checkpointer_of(runtime),
    )
