"""Service requests in PostgreSQL: plain, parameterised SQL, always scoped to a tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from services.incident.domain.request import ServiceRequest
from services.incident.domain.workflow import Approval
from shared.db import Connection

_FIELDS = [f.name for f in fields(ServiceRequest)]
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(_FIELDS) + 1))
# id and tenant_id (the first two) never change.
_SETS = ", ".join(f"{name} = ${i}" for i, name in enumerate(_FIELDS, start=1) if i > 2)
assert _FIELDS[:2] == ["id", "tenant_id"]


def _row(request: ServiceRequest) -> list[Any]:
    values = asdict(request)
    values["approvers"] = list(request.approvers)
    return [values[name] for name in _FIELDS]


def _request(row: Any) -> ServiceRequest:
    values = dict(row)
    values["approvers"] = tuple(values["approvers"] or ())
    return ServiceRequest(**values)


async def insert(conn: Connection, request: ServiceRequest) -> None:
    """Store a new request."""
    await conn.execute(
        f"INSERT INTO service_requests ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",  # noqa: S608 - constant column list
        *_row(request),
    )


async def save(conn: Connection, request: ServiceRequest) -> None:
    """Store a new version of a request the caller holds locked."""
    await conn.execute(
        f"UPDATE service_requests SET {_SETS}"  # noqa: S608 - constant columns
        " WHERE id = $1 AND tenant_id = $2",
        *_row(request),
    )


async def get(
    conn: Connection, tenant_id: str, request_id: uuid.UUID, *, lock: bool = False
) -> ServiceRequest | None:
    """The tenant's request with this id, or None (locked for the transaction with `lock`)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM service_requests WHERE tenant_id = $1 AND id = $2"  # noqa: S608 - constant column list
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        request_id,
    )
    return _request(row) if row else None


async def record_history(
    conn: Connection, request: ServiceRequest, *, action: str, changes: dict[str, Any]
) -> None:
    """Keep the version: who, when, what changed."""
    await conn.execute(
        "INSERT INTO request_history (tenant_id, request_id, version, at, actor, action, changes)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        request.tenant_id,
        request.id,
        request.version,
        request.updated_at,
        request.updated_by,
        action,
        changes,
    )


async def history(conn: Connection, tenant_id: str, request_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a request, oldest first."""
    rows = await conn.fetch(
        "SELECT version, at, actor, action, changes FROM request_history"
        " WHERE tenant_id = $1 AND request_id = $2 ORDER BY version",
        tenant_id,
        request_id,
    )
    return [dict(r) for r in rows]


async def add_approval(conn: Connection, request: ServiceRequest, approval: Approval) -> None:
    """Record a decision, with the request version it produced."""
    await conn.execute(
        "INSERT INTO request_approvals (tenant_id, request_id, approver, decision, at, comment,"
        " version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        request.tenant_id,
        request.id,
        approval.approver,
        approval.decision,
        approval.at,
        approval.comment,
        request.version,
    )


async def approvals(
    conn: Connection, tenant_id: str, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Approval]]:
    """The decisions on each of these requests, in the order they were made."""
    rows = await conn.fetch(
        "SELECT request_id, approver, decision, at, comment FROM request_approvals"
        " WHERE tenant_id = $1 AND request_id = ANY($2::uuid[]) ORDER BY at, version",
        tenant_id,
        list(request_ids),
    )
    found: dict[uuid.UUID, list[Approval]] = {request_id: [] for request_id in request_ids}
    for r in rows:
        found[r["request_id"]].append(
            Approval(
                approver=r["approver"], decision=r["decision"], at=r["at"], comment=r["comment"]
            )
        )
    return found


@dataclass(frozen=True)
class RequestFilter:
    """What a list asks for; empty or None means any.

    `involving` limits the list to the requests a person is the requester or the submitter of
    (what a caller who may only follow their own requests sees).
    """

    states: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    requester: str | None = None
    service: str | None = None
    item: str | None = None
    involving: str | None = None


async def search(
    conn: Connection,
    tenant_id: str,
    where: RequestFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ServiceRequest]:
    """Requests matching the filter, newest first, after a (created_at, id) position."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM service_requests WHERE tenant_id = $1"  # noqa: S608 - constant column list
        " AND (cardinality($2::text[]) = 0 OR state = ANY($2))"
        " AND (cardinality($3::smallint[]) = 0 OR priority = ANY($3))"
        " AND ($4::text IS NULL OR requester = $4)"
        " AND ($5::text IS NULL OR service = $5)"
        " AND ($6::text IS NULL OR item = $6)"
        " AND ($7::text IS NULL OR requester = $7 OR created_by = $7)"
        " AND ($8::timestamptz IS NULL OR (created_at, id) < ($8, $9))"
        " ORDER BY created_at DESC, id DESC LIMIT $10",
        tenant_id,
        list(where.states),
        list(where.priorities),
        where.requester,
        where.service,
        where.item,
        where.involving,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_request(r) for r in rows]
