"""Service request use cases (ISO/IEC 20000-1 8.6.2): each runs in one unit of work with its
history, its events and its SLA clocks.

**Submission** takes a per-tenant number (REQ<n>), the priority from the tenant's impact ×
urgency matrix, and the SLA policy from this service's projection of the config service: the
policy covering the named business service, else the tenant's default policy, else none (no
clocks). Response and resolution clocks start with the request (a reaction to its submitted
event, `application/reactions.py`, run before it is routed). A request that needs approval
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

from services.incident.adapters import numbers
from services.incident.adapters.requests import RequestFilter
from services.incident.application import sla
from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import (
    IncidentWork,
    store_new_request,
    store_request_change,
)
from services.incident.domain import request as domain
from services.incident.domain.request import ServiceRequest
from services.incident.domain.workflow import Approval, Decision
from services.incident.metrics import IncidentMetrics
from shared.auth.roles import allowed
from shared.context import RequestContext
from shared.errors import FieldError, NotFound, StaleVersion, ValidationFailed, invalid_field

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


async def _service_id(uow: IncidentWork, given: str | None) -> str | None:
    """The business service a request names, by id or else by name; `ValidationFailed` naming
    `service` for one the projection does not know."""
    if given is None:
        return None
    found = await uow.projection.service_by_id(given)
    if found is None:
        found = await uow.projection.service_by_name(given)
    if found is None:
        raise invalid_field("service", f"no business service {given} is known")
    return found.id


async def submit_request_in(
    uow: IncidentWork,
    command: SubmitRequest,
    *,
    now: datetime | None = None,
    number: int | None = None,
) -> ServiceRequest:
    """Store a new request and its events, start its clocks, and send it for approval when it
    needs one. `number`: taken beforehand (`numbers.allocate`), else in this unit of work."""
    now = now or datetime.now(UTC)
    settings = await uow.settings.get()
    service = await _service_id(uow, command.service)
    policy = await uow.projection.policy_for([service] if service else [])
    try:
        request, events = domain.submit(
            tenant_id=uow.tenant_id,
            number=number or await uow.numbers.next("request"),
            title=command.title,
            description=command.description,
            actor=uow.context.actor,
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
        raise ValidationFailed([FieldError(f, d) for f, d in exc.problems.items()]) from None
    await store_new_request(uow, request, events)
    await uow.react()  # the clocks start before the request goes on hold for approval
    routed = domain.route_for_approval(request, now=now)
    if routed is not None:
        stored = await store_request_change(uow, routed, "transitioned")
        await drive_clocks(uow, request, stored, now)
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
    async with unit_of_work(pool, context, metrics) as uow:
        request = await submit_request_in(uow, command, number=number)
        body = request_view(request, [])
    if metrics is not None:
        metrics.requests_submitted.labels(str(request.needs_approval).lower()).inc()
    return body


async def _visible(
    uow: IncidentWork, request_id: uuid.UUID, *, lock: bool = False
) -> ServiceRequest:
    """The request, if the caller may see it; `NotFound` otherwise (as for another tenant's)."""
    context = uow.context
    request = await uow.requests.get(request_id, lock=lock)
    if request is None or not (sees_every_request(context) or request.involves(context.actor)):
        raise NotFound("service request", str(request_id))
    return request


async def _locked(uow: IncidentWork, request_id: uuid.UUID, expected: int | None) -> ServiceRequest:
    request = await _visible(uow, request_id, lock=True)
    if expected is not None and expected != request.version:
        raise StaleVersion("the service request", request.version, expected)
    return request


async def _decisions(uow: IncidentWork, request: ServiceRequest) -> list[Approval]:
    return (await uow.requests.approvals([request.id]))[request.id]


async def get_request_in(uow: IncidentWork, request_id: uuid.UUID) -> dict[str, Any]:
    """The request with its decisions, if the caller may see it."""
    request = await _visible(uow, request_id)
    return request_view(request, await _decisions(uow, request))


async def get_request(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> dict[str, Any]:
    """The request with its decisions, if the caller may see it."""
    async with unit_of_work(pool, context) as uow:
        return await get_request_in(uow, request_id)


@dataclass(frozen=True)
class RequestPage:
    """One page of requests (JSON-ready) and the position after its last one, if more follow."""

    items: list[dict[str, Any]]
    last: tuple[datetime, uuid.UUID] | None


async def search_requests_in(
    uow: IncidentWork,
    where: RequestFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> RequestPage:
    """The caller's visible requests matching the filter, newest first."""
    if not sees_every_request(uow.context):
        where = RequestFilter(**{**asdict(where), "involving": uow.context.actor})
    found = await uow.requests.search(where, after=after, limit=limit + 1)
    page = found[:limit]
    decisions = await uow.requests.approvals([r.id for r in page])
    last = (page[-1].created_at, page[-1].id) if len(found) > limit else None
    return RequestPage([request_view(r, decisions[r.id]) for r in page], last)


async def search_requests(
    pool: asyncpg.Pool,
    where: RequestFilter,
    context: RequestContext,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> RequestPage:
    """The caller's visible requests matching the filter, newest first."""
    async with unit_of_work(pool, context) as uow:
        return await search_requests_in(uow, where, after=after, limit=limit)


async def transition_request_in(
    uow: IncidentWork,
    request_id: uuid.UUID,
    wanted: str,
    *,
    expected_version: int | None,
    notes: str | None = None,
    now: datetime | None = None,
) -> tuple[ServiceRequest, ServiceRequest, list[Approval]]:
    """Move a request to another state and drive its SLA clocks accordingly: the request
    before and after, and its decisions."""
    now = now or datetime.now(UTC)
    request = await _locked(uow, request_id, expected_version)
    change = domain.transition(request, wanted, actor=uow.context.actor, now=now, notes=notes)
    stored = await store_request_change(uow, change, "transitioned")
    await drive_clocks(uow, request, stored, now)
    return request, stored, await _decisions(uow, stored)


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
    async with unit_of_work(pool, context, metrics) as uow:
        request, stored, decisions = await transition_request_in(
            uow, request_id, wanted, expected_version=expected_version, notes=notes, now=now
        )
        view = request_view(stored, decisions)
    if metrics is not None and stored.state == "fulfilled":
        metrics.requests_fulfilled.inc()
        metrics.time_to_fulfil.observe((now - request.created_at).total_seconds())
    return view


async def decide_request_in(
    uow: IncidentWork,
    request_id: uuid.UUID,
    decision: Decision,
    *,
    expected_version: int | None,
    comment: str = "",
    now: datetime | None = None,
) -> tuple[ServiceRequest, list[Approval]]:
    """Record the caller's decision; the one that settles the request moves it (and its
    clocks) to `in_fulfilment` or `rejected`. The request after it, and its decisions."""
    now = now or datetime.now(UTC)
    request = await _locked(uow, request_id, expected_version)
    change = domain.decide(
        request,
        approver=uow.context.actor,
        decision=decision,
        now=now,
        comment=comment,
        recorded=await _decisions(uow, request),
    )
    stored = await store_request_change(uow, change, "decided")
    await drive_clocks(uow, request, stored, now)
    return stored, await _decisions(uow, stored)


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
    async with unit_of_work(pool, context, metrics) as uow:
        stored, decisions = await decide_request_in(
            uow, request_id, decision, expected_version=expected_version, comment=comment
        )
        view = request_view(stored, decisions)
    if metrics is not None:
        metrics.request_decisions.labels(decision).inc()
    return view


async def request_history(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> list[dict[str, Any]]:
    """Every version of the request: who, when, what changed."""
    async with unit_of_work(pool, context) as uow:
        return await request_history_in(uow, request_id)


async def request_history_in(uow: IncidentWork, request_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of the request, if the caller may see it."""
    await _visible(uow, request_id)
    return await uow.requests.history(request_id)


async def request_clocks(
    pool: asyncpg.Pool, request_id: uuid.UUID, context: RequestContext
) -> list[dict[str, Any]]:
    """The request's SLA clocks as they stand now (empty without a policy)."""
    async with unit_of_work(pool, context) as uow:
        return await request_clocks_in(uow, request_id)


async def request_clocks_in(
    uow: IncidentWork, request_id: uuid.UUID, *, at: datetime | None = None
) -> list[dict[str, Any]]:
    """The request's SLA clocks as they stand at `at` (default now), if the caller may see it."""
    await _visible(uow, request_id)
    return [c.as_json() for c in await sla.views_of(uow, "request", request_id, at=at)]


async def drive_clocks(
    uow: IncidentWork, before: ServiceRequest, after: ServiceRequest, at: datetime
) -> list[sla.Fired]:
    """What a move does to the clocks (module docstring); nothing when the state stays."""
    if before.state == after.state:
        return []
    common: dict[str, Any] = {"record": "request", "record_id": after.id, "at": at}
    fired: list[sla.Fired] = []
    if before.state == "awaiting_approval":
        fired += await sla.resume(uow, **common)
    if after.state == "awaiting_approval":
        fired += await sla.on_hold(uow, reason="awaiting_approval", **common)
    elif after.state == "in_fulfilment":
        fired += await sla.stop(uow, kind="response", **common)
    elif after.state in ("fulfilled", "rejected", "cancelled"):
        fired += await sla.stop(uow, kind=("response", "resolution"), **common)
    return fired
