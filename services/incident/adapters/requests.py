"""Service requests in PostgreSQL: plain, parameterised SQL, always scoped to a tenant.

The numbered, versioned record itself is the shared repository (`shared/records/sql.py`) over
the `service_requests` table; this module adds the approvals and the request filter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.incident.domain.request import ServiceRequest
from services.incident.domain.workflow import Approval
from shared.db import Connection
from shared.records.sql import Condition, RecordTable

REQUESTS = RecordTable(
    ServiceRequest,
    table="service_requests",
    history="request_history",
    key="request_id",
    kind="request",
    what="the service request",
    arrays=("approvers",),
)


async def insert(conn: Connection, request: ServiceRequest) -> None:
    """Store a new request."""
    await REQUESTS.insert(conn, request)


async def save(conn: Connection, request: ServiceRequest) -> None:
    """Store a new version of a request the caller holds locked."""
    await REQUESTS.save(conn, request)


async def get(
    conn: Connection, tenant_id: str, request_id: uuid.UUID, *, lock: bool = False
) -> ServiceRequest | None:
    """The tenant's request with this id, or None (locked for the transaction with `lock`)."""
    return await REQUESTS.get(conn, tenant_id, request_id, lock=lock)


async def record_history(
    conn: Connection, request: ServiceRequest, *, action: str, changes: dict[str, Any]
) -> None:
    """Keep the version: who, when, what changed."""
    await REQUESTS.record_history(conn, request, action=action, changes=changes)


async def history(conn: Connection, tenant_id: str, request_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a request, oldest first."""
    return await REQUESTS.history(conn, tenant_id, request_id)


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
    conditions = [
        Condition("(cardinality({p}::text[]) = 0 OR r.state = ANY({p}))", list(where.states)),
        Condition(
            "(cardinality({p}::smallint[]) = 0 OR r.priority = ANY({p}))", list(where.priorities)
        ),
        Condition("({p}::text IS NULL OR r.requester = {p})", where.requester),
        Condition("({p}::text IS NULL OR r.service = {p})", where.service),
        Condition("({p}::text IS NULL OR r.item = {p})", where.item),
        Condition(
            "({p}::text IS NULL OR r.requester = {p} OR r.created_by = {p})", where.involving
        ),
    ]
    return await REQUESTS.search(conn, tenant_id, conditions, after=after, limit=limit)
