"""The verifiable log's HTTP API: checkpoints, entries, proofs and keys (docs/ledger.md)."""

from __future__ import annotations

import uuid
import weakref
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import log
from services.reporting.adapters.checkpoints import StoredCheckpoint
from services.reporting.application import proofs
from services.reporting.application.checkpoints import (
    Checkpointer,
    LedgerConfiguration,
    signer_of,
)
from services.reporting.domain.checkpoints import origin_of
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import ReportingSettings
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import Conflict
from shared.http.context import authorize
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["verifiable log"])
ReportingRuntime = ServiceRuntime[ReportingSettings, ReportingMetrics]
Runtime = Annotated[ReportingRuntime, Depends(runtime_of)]


class CheckpointOut(BaseModel):
    """A signed checkpoint of the tenant's log."""

    origin: str
    tree_size: int
    root_hash: str = Field(description="Base64 of the tree's root hash (RFC 9162 MTH).")
    key_id: str
    signed_at: datetime
    note: str = Field(description="The checkpoint as a C2SP signed note (text, signatures).")


def _checkpoint_out(runtime: ReportingRuntime, checkpoint: StoredCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        origin=origin_of(runtime.settings.ledger_origin, checkpoint.tenant_id),
        tree_size=checkpoint.tree_size,
        root_hash=proofs.b64(checkpoint.root_hash),
        key_id=checkpoint.key_id,
        signed_at=checkpoint.signed_at,
        note=checkpoint.note,
    )


@router.get(
    "/ledger/checkpoint",
    response_model=CheckpointOut,
    summary="The newest signed checkpoint (JSON, or the signed note with Accept: text/plain)",
    responses={
        200: {"content": {"text/plain": {}}},
        404: {"description": "No checkpoint of this tenant's log is signed yet"},
    },
)
async def latest_checkpoint(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        checkpoint = await proofs.newest_checkpoint(conn, context.tenant_id)
    if accept is not None and "text/plain" in accept and "json" not in accept:
        return PlainTextResponse(checkpoint.note)
    return _checkpoint_out(runtime, checkpoint)


# One checkpointer per runtime for on-demand checkpoints (the background task has its own).
_checkpointers: weakref.WeakKeyDictionary[ReportingRuntime, Checkpointer] = (
    weakref.WeakKeyDictionary()
)


def checkpointer_of(runtime: ReportingRuntime) -> Checkpointer:
    """The runtime's checkpointer for requests, made on first use."""
    found = _checkpointers.get(runtime)
    if found is None:
        found = Checkpointer(
            runtime.pool,
            signer_of(runtime.settings),
            LedgerConfiguration.of(runtime.settings),
            runtime.service_metrics,
            runtime.metrics.tenant,
        )
        _checkpointers[runtime] = found
    return found


@router.post(
    "/ledger/checkpoints",
    response_model=CheckpointOut,
    status_code=201,
    summary="Sign a checkpoint of the log now (200 with the newest when nothing is new)",
    responses={
        200: {"model": CheckpointOut, "description": "Nothing is new: the newest checkpoint"},
        409: {"description": "The log is empty, or its signing key's entry is on its way"},
    },
)
async def checkpoint_now(
    context: Annotated[RequestContext, authorize("ledger:checkpoint")],
    runtime: Runtime,
    response: Response,
) -> CheckpointOut:
    checkpointer = checkpointer_of(runtime)
    await checkpointer.register_key()
    signed, _ = await checkpointer.checkpoint(context.tenant_id, trigger="demand", on_demand=True)
    if signed is None:
        async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
            newest = await store.latest(conn, context.tenant_id)
        if newest is None or (await _size(runtime, context.tenant_id)) > newest.tree_size:
            raise Conflict(
                "the log cannot be signed yet: it is empty, or its signing key is still being"
                " recorded in it; try again in a few seconds"
            )
        response.status_code = 200
        return _checkpoint_out(runtime, newest)
    return _checkpoint_out(runtime, signed)


async def _size(runtime: ReportingRuntime, tenant_id: str) -> int:
    async with tenant_transaction(runtime.pool, tenant_id, readonly=True) as conn:
        head = await log.read_head(conn, tenant_id)
    return 0 if head is None else head.size


class EntryOut(BaseModel):
    """One entry of the log: its index, event and canonical bytes."""

    index: int
    event_id: uuid.UUID
    type: str
    subject: str
    entry: str = Field(description="Base64 of the entry's canonical bytes (docs/ledger.md).")


class EntriesOut(BaseModel):
    """Entries [start, end) of the log (at most 1000), and its size now."""

    tree_size: int
    entries: list[EntryOut]


@router.get("/ledger/entries", response_model=EntriesOut, summary="Entries by index range")
async def read_entries(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    start: Annotated[int, Query(ge=0, le=2**62, description="First index")] = 0,
    end: Annotated[
        int | None, Query(ge=0, le=2**62, description="Index after the last (exclusive)")
    ] = None,
) -> EntriesOut:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        page = await proofs.entries(conn, context.tenant_id, start, end)
    return EntriesOut.model_validate({"tree_size": page.tree_size, "entries": page.entries})


class InclusionOut(BaseModel):
    """PATH(index, D[tree_size]) of RFC 9162, with the root it leads to."""

    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str] = Field(description="Base64 node hashes, nearest the leaf first.")
    root_hash: str
    checkpoint: str | None = Field(description="The signed note of this size, if one is.")


@router.get(
    "/ledger/proofs/inclusion",
    response_model=InclusionOut,
    summary="Inclusion proof of an entry",
    responses={404: {"description": "No such event, or no checkpoint to default the size to"}},
)
async def inclusion_proof(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    index: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    event_id: uuid.UUID | None = None,
    tree_size: Annotated[
        int | None, Query(ge=1, le=2**62, description="Default: the newest checkpoint's")
    ] = None,
) -> dict[str, Any]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        return await proofs.inclusion(
            conn, context.tenant_id, index=index, event_id=event_id, tree_size=tree_size
        )


class ConsistencyOut(BaseModel):
    """PROOF(first, D[second]) of RFC 9162, with both roots."""

    first: int
    second: int
    proof: list[str]
    first_root: str
    second_root: str
    first_checkpoint: str | None
    second_checkpoint: str | None


@router.get(
    "/ledger/proofs/consistency",
    response_model=ConsistencyOut,
    summary="Consistency proof between two tree sizes",
    responses={404: {"description": "No checkpoint is signed yet to default `second` to"}},
)
async def consistency_proof(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    first: Annotated[int, Query(ge=0, le=2**62)],
    second: Annotated[
        int | None, Query(ge=0, le=2**62, description="Default: the newest checkpoint's")
    ] = None,
) -> dict[str, Any]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        return await proofs.consistency(conn, context.tenant_id, first=first, second=second)


class KeyOut(BaseModel):
    """A key that signs (or signed) the ledger's checkpoints."""

    key_id: str
    verifier_key: str = Field(description="C2SP note verifier key: name+hash+base64(0x01||key)")
    first_used: datetime
    retired_at: datetime | None


@router.get("/ledger/keys", response_model=list[KeyOut], summary="The ledger's signing keys")
async def signing_keys(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
) -> list[KeyOut]:
    async with runtime.pool.acquire() as conn:
        keys = await store.keys(conn)
    return [KeyOut.model_validate(key, from_attributes=True) for key in keys]
