"""Service request use cases (ISO/IEC 20000-1 8.6.2): each runs in one tenant transaction with
its history, its outbox events and its SLA clocks.

**Submission** takes a per-tenant number (REQ<n>), the priority from the tenant's impact ×
urgency matrix, and the SLA policy from this service's projection of the config service: the
policy covering the named business service, else the tenant's default policy, else none (no
clocks). Response and resolution clocks start with the request. A request that needs approval
goes on to `awaiting_approval` in the same transaction (a second version and event, by its
submitter), so a client never sees it waiting in `submitted` for a move nobody will make.

**Clocks** follow the moves (`drive_clocks`):

| move                              | clocks                                                |
|-----------------------------------|-------------------------------------------------------|
| into `awaiting_approval`          | on hold for `awaiting_approval`: paused if the        |
|                                   | policy's `pause_on` has it, else they keep running    |
| out of `awaiting_approval`        | resumed (the pause, if any, ends)                     |
| into `in_fulfilment`              | response clock stopped (fulfilment started)           |
| into `fulfilled`, `rejected`,     | both stopped, each with its outcome (met / breached); |
| `cancelled`                       | `closed` changes nothing more                         |

Time waiting for approval counts against the targets unless the policy says otherwise: ITIL
practice is that it should not (the provider cannot act before the customer's side decides),
but the agreement is the customer's, so it is the policy's `pause_on` that decides, exactly as
for an incident's hold reasons.

**Visibility.** Agents, approvers, auditors and integrations (anyone whose roles grant
`request:read` other than through the `requester` role) see every request of the tenant. A
caller who holds `request:read` only as a requester sees the requests they submitted or that
are for them; any other is "not found" to them, as another tenant's would be.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from services.incident.adapters import numbers, projections, repository
from services.incident.adapters import requests as store
from services.incident.adapters.requests import RequestFilter
from services.incident.application import sla
from services.incident.application.handlers import tenant_settings
from services.incident.domain import request as domain
from services.incident.domain.request import Change, ServiceRequest
from services.incident.domain.workflow import Approval, Decision
from services.incident.metrics import IncidentMetrics
from shared import outbox
from shared.auth.roles import allowed
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import EventPayload
from shared.http.etags import stale_version
from shared.http.problems import invalid, not_found

# Roles that may follow only their own requests: request:read through them alone is not
# enough to see the tenant's other requests.
OWN_REQUESTS_ONLY: Final[frozenset[str]] = frozenset({"requester"})


def sees_every_request(context: RequestContext) -> bool:
    """Whether the caller may read all of the tenant's requests, not only their own."""
    return allowed("request:read", context.roles - OWN_REQUESTS_ONLY)


@dataclass(frozen=True)
class SubmitRequest:
    """Command: submit a service request."""

    title: str
    description: str = ""
    item: str | None = None
    service: str | None = None
    requested_for: str | None = None
    impact: int = 3
    urgency: int = 3
    needs_approval: bool | None = None
    approvers: tuple[str, ...] = ()


def request_view(request: ServiceRequest, approvals: list[Approval]) -> dict[str, Any]:
    """The request as the API shows it (JSON-ready), with its decisions and who is still to
    decide."""
    view = asdict(request)
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
    view["approvers"] = list(request.approvers)
    view["reference"] = request.reference
    view["approvals"] = [
        {
            "approver": a.approver,
            "decision": a.decision,
            "at": a.at.isoformat(),
            "comment": a.comment,
        }
        for a in approvals
    ]
    decided = {a.approver for a in approvals}
    view["pending_approvers"] = (
        [name for name in request.approvers if name not in decided]
        if request.state == "awaiting_approval"
        else []
    )
    return view


async def _append(
    conn: Connection,
    request: ServiceRequest,
    events: list[EventPayload],
    context: RequestContext,
) -> None:
    await outbox.append_many(
        conn,
        [outbox.Pending(e, str(request.id), request.version) for e in events],
        tenant_id=request.tenant_id,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )


async def _store(
    conn: Connection, change: Change, action: str, context: RequestContext
) -> ServiceRequest:
    await store.save(conn, change.request)
    await store.record_history(conn, change.request, action=action, changes=change.changes)
    if change.approval is not None:
        await store.add_approval(conn, change.request, change.approval)
    await _append(conn, change.request, change.events, context)
    return change.request


async def _service_id(conn: Connection, tenant: str, given: str | None) -> str | None:
    """The business service a request names, by id or else by name; 422 naming `service` for
    one the projection does not know."""
    if given is None:
        return None
    found = await projections.service_by_id(conn, tenant, given)
    if found is None:
        found = await projections.service_by_name(conn, tenant, given)
    if found is None:
        raise invalid(
            [{"in": "body", "field": "service", "detail": f"no business service {given} is known"}]
        )
    return found.id


async def record_request(
    conn: Connection,
    command: SubmitRequest,
    context: RequestContext,
    *,
    metrics: IncidentMetrics | None = None,
    now: datetime | None = None,
    number: int | None = None,
) -> ServiceRequest:
    """Inside the caller's transaction: store a new request, its events and its clocks, and
    send it for approval when it needs one. `number`: taken beforehand (`numbers.allocate`),
    else in this transaction."""
    now = now or datetime.now(UTC)
    tenant = context.tenant_id
    settings = await tenant_settings(conn, tenant)
    service = await _service_id(conn, tenant, command.service)
    policy = await projections.policy_for(conn, tenant, [service] if service else [])
    try:
        request, events = domain.submit(
            tenant_id=tenant,
            number=number or await repository.next_number(conn, tenant, "request"),
            title=command.title,
            description=command.description,
            actor=context.actor,
            now=now,
            requested_for=command.requested_for,
            impact=command.impact,
            urgency=command.urgency,
            matrix=settings.matrix,
            needs_approval=command.needs_approval,
            approvers=command.approvers,
            item=command.item,
            service=service,
            sla_policy=policy.name if policy else None,
        )
    except domain.InvalidRequest as exc:
        raise invalid(
            [{"in": "body", "field": f, "detail": d} for f, d in exc.problems.items()]
        ) from None
    await store.insert(conn, request)
    await store.record_history(conn, request, action="submitted", changes={})
    await _append(conn, request, events, context)
    await sla.start_clocks(
        conn,
        tenant=tenant,
        record="request",
        record_id=request.id,
        policy=policy,
        priority=request.priority,
        at=now,
        actor=context.actor,
        correlation_id=context.correlation_id,
        metrics=metrics,
    )
    routed = domain.route_for_approval(request, now=now)
    if routed is not None:
        stored = await _store(conn, routed, "transitioned", context)
        await drive_clocks(conn, request, stored, now, context, metrics)
        request = stored
    return request


async def submit_request(
    pool: asyncpg.Pool,
    command: SubmitRequest,
    context: RequestContext,
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """Store the request and its events atomically (Idempotency-Key: shared/http)."""
    number = await numbers.allocate(pool, context.tenant_id, "request")
    async with tenant_transaction(pool, context.tenant_id) as conn:
        request = await record_request(conn, command, context, metrics=metrics, number=number)
        body = request_view(request, [])
    if metrics is not None:
        metrics.requests_submitted.labels(str(request.needs_approval).lower()).inc()
    return body


async def _visible(
    conn: Connection,
    context: RequestContext,
    request_id: uuid.UUID,
    *,
    lock: bool = False,
) -> ServiceRequest:
    """The request, if the caller may see it; 404 otherwise (as for another tenant's)."""
    request = await store.get(conn, context.tenant_id, request_id, lock=lock)
    if request is None or not (sees_every_request(context) or request.involves(context.actor)):
        raise not_found("service request", str(request_id))
    return request


async def _locked(
    conn: Connection, context: RequestContext, request_id: uuid.UUID, expected: int | None
) -> ServiceRequest:
    request = await _visible(conn, context, request_id, lock=True)
    if expected is not None and expected != request.version:
        raise stale_version("the service request", request.version, expected)
    return request


async def _decisions(conn: Connection, request: ServiceRequest) -> list[Approval]:
    return (await store.approvals(conn, request.tenant_id, [request.id]))[request.id]


async def get_request(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> dict[str, Any]:
    """The request with its decisions, if the caller may see it."""
    async with tenant_transaction(pool, context.tenant_id, readonly=True) as conn:
        request = await _visible(conn, context, request_id)
        return request_view(request, await _decisions(conn, request))


@dataclass(frozen=True)
class RequestPage:
    """One page of requests (JSON-ready) and the position after its last one, if more follow."""

    items: list[dict[str, Any]]
    last: tuple[datetime, uuid.UUID] | None


async def search_requests(
    pool: asyncpg.Pool,
    where: RequestFilter,
    context: RequestContext,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> RequestPage:
    """The caller's visible requests matching the filter, newest first."""
    if not sees_every_request(context):
        where = RequestFilter(**{**asdict(where), "involving": context.actor})
    async with tenant_transaction(pool, context.tenant_id, readonly=True) as conn:
        found = await store.search(conn, context.tenant_id, where, after=after, limit=limit + 1)
        page = found[:limit]
        decisions = await store.approvals(conn, context.tenant_id, [r.id for r in page])
    last = (page[-1].created_at, page[-1].id) if len(found) > limit else None
    return RequestPage([request_view(r, decisions[r.id]) for r in page], last)


async def transition_request(
    pool: asyncpg.Pool,
    request_id: uuid.UUID,
    wanted: str,
    context: RequestContext,
    *,
    expected_version: int | None,
    notes: str | None = None,
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """Move a request to another state and drive its SLA clocks accordingly."""
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        request = await _locked(conn, context, request_id, expected_version)
        change = domain.transition(request, wanted, actor=context.actor, now=now, notes=notes)
        stored = await _store(conn, change, "transitioned", context)
        await drive_clocks(conn, request, stored, now, context, metrics)
        view = request_view(stored, await _decisions(conn, stored))
    if metrics is not None and stored.state == "fulfilled":
        metrics.requests_fulfilled.inc()
        metrics.time_to_fulfil.observe((now - request.created_at).total_seconds())
    return view


async def decide_request(
    pool: asyncpg.Pool,
    request_id: uuid.UUID,
    decision: Decision,
    context: RequestContext,
    *,
    expected_version: int | None,
    comment: str = "",
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """Record the caller's decision; the one that settles the request moves it (and its
    clocks) to `in_fulfilment` or `rejected`."""
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        request = await _locked(conn, context, request_id, expected_version)
        change = domain.decide(
            request,
            approver=context.actor,
            decision=decision,
            now=now,
            comment=comment,
            recorded=await _decisions(conn, request),
        )
        stored = await _store(conn, change, "decided", context)
        await drive_clocks(conn, request, stored, now, context, metrics)
        view = request_view(stored, await _decisions(conn, stored))
    if metrics is not None:
        metrics.request_decisions.labels(decision).inc()
    return view


async def request_history(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> list[dict[str, Any]]:
    """Every version of the request: who, when, what changed."""
    async with tenant_transaction(pool, context.tenant_id, readonly=True) as conn:
        await _visible(conn, context, request_id)
        return await store.history(conn, context.tenant_id, request_id)


async def request_clocks(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> list[dict[str, Any]]:
    """The request's SLA clocks as they stand now (empty without a policy)."""
    async with tenant_transaction(pool, context.tenant_id, readonly=True) as conn:
        await _visible(conn, context, request_id)
        clocks = await sla.clocks_of(conn, context.tenant_id, "request", request_id)
    return [c.as_json() for c in clocks]


async def drive_clocks(
    conn: Connection,
    before: ServiceRequest,
    after: ServiceRequest,
    at: datetime,
    context: RequestContext,
    metrics: IncidentMetrics | None,
) -> list[sla.Fired]:
    """What a move does to the clocks (module docstring); nothing when the state stays."""
    if before.state == after.state:
        return []
    common: dict[str, Any] = {
        "tenant": after.tenant_id,
        "record": "request",
        "record_id": after.id,
        "at": at,
        "actor": context.actor,
        "correlation_id": context.correlation_id,
        "metrics": metrics,
    }
    fired: list[sla.Fired] = []
    if before.state == "awaiting_approval":
        fired += await sla.resume(conn, **common)
    if after.state == "awaiting_approval":
        fired += await sla.on_hold(conn, reason="awaiting_approval", **common)
    elif after.state == "in_fulfilment":
        fired += await sla.stop(conn, kind="response", **common)
    elif after.state in ("fulfilled", "rejected", "cancelled"):
        fired += await sla.stop(conn, kind=("response", "resolution"), **common)
    return fired
