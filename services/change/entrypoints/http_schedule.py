"""The change schedule over HTTP: maintenance and blackout windows (`/change-windows`), a
change's conflicts, a hypothetical window's conflicts, the schedule of a period as JSON and as an
iCalendar feed, and the next free slot. Thin handlers over `application/schedule.py`; refusals
are the typed errors of `shared/errors.py`, answered by the one problem+json mapping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, NaiveDatetime

from services.change.application import schedule as use_cases
from services.change.domain.change import ChangeState
from services.change.domain.schedule import PlannedWork, ScheduleConflict
from services.change.domain.windows import ChangeWindow, WindowKind, WindowScope, window_view
from services.change.entrypoints import icalendar
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.errors import invalid_field
from shared.http import records
from shared.http.context import authorize
from shared.http.etags import IfMatch, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import Cursor, PageSize
from shared.http.types import Timestamp
from shared.records.sql import Condition
from shared.service import ServiceRuntime

router = APIRouter(tags=["change schedule"])
Runtime = records.Runtime

READ = "schedule:read"
MANAGE = "change_window:manage"
CiId = Annotated[str, Field(min_length=1, max_length=200)]
# The feed's default period: a month back, six months ahead.
FEED_BEFORE = timedelta(days=31)
FEED_AFTER = timedelta(days=183)


class NewWindow(RequestBody):
    """Body of POST /change-windows."""

    name: str = Field(min_length=1, max_length=200)
    kind: WindowKind = Field(description="maintenance: changes run inside; blackout: freeze.")
    scope: WindowScope = Field(description="all CIs, one business service, or a set of CIs.")
    description: str = Field(default="", max_length=5_000)
    service: str | None = Field(
        default=None, min_length=1, max_length=200, description="Business service id (scope)."
    )
    ci_ids: list[CiId] = Field(default_factory=list, max_length=5_000)
    start: NaiveDatetime = Field(
        description="Local wall-clock start, without an offset (read in the time zone)."
    )
    duration: timedelta = Field(description="ISO 8601 duration of each occurrence, e.g. PT2H.")
    rrule: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="RFC 5545 RRULE value, e.g. FREQ=WEEKLY;BYDAY=SU (UNTIL in local time).",
    )
    exclusions: list[date] = Field(
        default_factory=list, max_length=1_000, description="Local dates with no occurrence."
    )
    time_zone: str | None = Field(
        default=None, min_length=1, max_length=64, description="IANA zone (default UTC)."
    )
    calendar: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A business calendar of the config service: its time zone is used.",
    )


class WindowRevision(RequestBody):
    """Body of PATCH /change-windows/{id}: the fields to change (the kind never changes)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5_000)
    scope: WindowScope | None = None
    service: str | None = Field(default=None, min_length=1, max_length=200)
    ci_ids: list[CiId] | None = Field(default=None, max_length=5_000)
    start: NaiveDatetime | None = None
    duration: timedelta | None = None
    rrule: str | None = Field(default=None, max_length=500, description="Empty: no recurrence.")
    exclusions: list[date] | None = Field(default=None, max_length=1_000)
    time_zone: str | None = Field(default=None, min_length=1, max_length=64)
    calendar: str | None = Field(default=None, min_length=1, max_length=200)


class WindowOut(BaseModel):
    """A window as the API returns it."""

    id: uuid.UUID
    reference: str = Field(description="WIN<number>, per tenant.")
    number: int
    tenant_id: str
    name: str
    kind: str
    scope: str
    description: str
    service: str | None
    ci_ids: list[str]
    start: str = Field(description="Local wall-clock start in time_zone.")
    duration_seconds: int
    rrule: str | None
    exclusions: list[date]
    time_zone: str
    calendar: str | None
    state: str = Field(description="active or retired")
    retire_reason: str | None
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class WindowPage(BaseModel):
    """One page of windows, newest first."""

    items: list[WindowOut]
    next_cursor: str | None = None


class ConflictOut(BaseModel):
    """One conflict: its kind, every CI of the window it involves, the other record."""

    kind: str = Field(
        description="change, maintenance_window, blackout, implementer or major_incident"
    )
    detail: str
    ci_ids: list[str]
    other_id: str | None
    other_reference: str | None


class ChangeConflictsOut(BaseModel):
    """A change's conflicts."""

    change_id: uuid.UUID
    planned_start: datetime | None
    planned_end: datetime | None
    hops: int
    conflicts: list[ConflictOut]


class HypotheticalWindow(RequestBody):
    """Body of POST /schedule/conflicts: a window a requester considers."""

    ci_ids: list[CiId] = Field(min_length=1, max_length=use_cases.MAX_CIS)
    start: Timestamp
    end: Timestamp
    implementer: str | None = Field(default=None, min_length=1, max_length=200)
    hops: int = Field(default=use_cases.DEFAULT_HOPS, ge=0, le=use_cases.MAX_HOPS)


class ConflictsOut(BaseModel):
    """The conflicts of a hypothetical window."""

    conflicts: list[ConflictOut]


class ScheduledChangeOut(BaseModel):
    """A change in the schedule."""

    id: uuid.UUID
    reference: str
    title: str
    type: str
    state: str
    planned_start: datetime
    planned_end: datetime
    implementer: str | None
    affected_cis: list[uuid.UUID]


class OccurrenceOut(BaseModel):
    """One occurrence of a window (UTC)."""

    start: datetime
    end: datetime


class ScheduledWindowOut(BaseModel):
    """A window and its occurrences in the period."""

    window: WindowOut
    occurrences: list[OccurrenceOut]


class ScheduleOut(BaseModel):
    """The schedule of a period."""

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    changes: list[ScheduledChangeOut]
    windows: list[ScheduledWindowOut]

    model_config = {"populate_by_name": True}


class FreeSlotOut(BaseModel):
    """The first free slot, or none in the next 90 days (`start` and `end` null)."""

    start: datetime | None
    end: datetime | None
    ci_ids: list[str]
    duration_seconds: int


def _metrics(runtime: ServiceRuntime) -> ChangeMetrics | None:
    metrics = runtime.service_metrics
    return metrics if isinstance(metrics, ChangeMetrics) else None


def _view(window: ChangeWindow) -> dict[str, Any]:
    return window_view(window)


def _conflict(conflict: ScheduleConflict) -> dict[str, Any]:
    return {
        "kind": conflict.kind,
        "detail": conflict.detail,
        "ci_ids": list(conflict.ci_ids),
        "other_id": conflict.other_id,
        "other_reference": conflict.other_reference,
    }


@router.post(
    "/change-windows",
    status_code=201,
    response_model=WindowOut,
    summary="Define a maintenance or blackout window",
)
async def create_window(
    body: NewWindow,
    context: Annotated[RequestContext, authorize(MANAGE)],
    runtime: Runtime,
) -> JSONResponse:
    command = use_cases.WindowFields(
        name=body.name,
        kind=body.kind,
        scope=body.scope,
        description=body.description,
        service=body.service,
        ci_ids=tuple(body.ci_ids),
        start=body.start,
        duration=body.duration,
        rrule=body.rrule,
        exclusions=tuple(body.exclusions),
        time_zone=body.time_zone,
        calendar=body.calendar,
    )
    window = await use_cases.define_window(runtime.pool, command, context)
    return records.versioned(WindowOut, _view(window), 201, Location=f"/change-windows/{window.id}")


@router.get("/change-windows", response_model=WindowPage, summary="List windows")
async def list_windows(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    kind: WindowKind | None = None,
    state: Literal["active", "retired"] | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = []
    if kind is not None:
        where.append(Condition("r.kind = {p}", kind))
    if state is not None:
        where.append(Condition("r.state = {p}", state))
    found = await use_cases.search_windows(
        runtime.pool, context.tenant_id, where, after=after, limit=limit + 1
    )
    page, next_cursor = records.keyset_page(found, limit)
    return {
        "items": [WindowOut.model_validate(_view(w)).model_dump(mode="json") for w in page],
        "next_cursor": next_cursor,
    }


async def _read(
    runtime: ServiceRuntime, context: RequestContext, window_id: uuid.UUID
) -> dict[str, Any]:
    return _view(await use_cases.get_window(runtime.pool, window_id, context.tenant_id))


async def _history(
    runtime: ServiceRuntime, context: RequestContext, window_id: uuid.UUID
) -> list[dict[str, Any]]:
    return await use_cases.window_history(runtime.pool, window_id, context.tenant_id)


async def _revise(
    runtime: ServiceRuntime,
    context: RequestContext,
    window_id: uuid.UUID,
    body: WindowRevision,
    expected: int,
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    for name in ("ci_ids", "exclusions"):
        if name in values and values[name] is not None:
            values[name] = tuple(values[name])
    if "rrule" in values and not values["rrule"]:
        values["rrule"] = None
    nulls = [
        n for n, v in values.items() if v is None and n not in ("rrule", "service", "calendar")
    ]
    if nulls:
        raise invalid_field(nulls[0], "cannot be null")
    window = await use_cases.revise_window(
        runtime.pool, window_id, values, context, expected_version=expected
    )
    return _view(window)


_windows = records.RecordRoutes(router, "/change-windows", ident="window_id", model=WindowOut)
_windows.read(permission=READ, read=_read, name="read_window", summary="Read a window")
_windows.history(permission=READ, history=_history)
_windows.write(
    method="patch",
    body=WindowRevision,
    permission=MANAGE,
    write=_revise,
    name="revise_window",
    summary="Revise a window's name, scope or timing (If-Match required)",
    responses={422: {"description": "A retired window, or fields that do not fit together"}},
)


@router.delete(
    "/change-windows/{window_id}",
    response_model=WindowOut,
    summary="Retire a window (If-Match required); it stays in the history",
    responses={409: {"description": "The window is already retired"}},
)
async def retire_window(
    window_id: uuid.UUID,
    context: Annotated[RequestContext, authorize(MANAGE)],
    runtime: Runtime,
    reason: Annotated[str, Query(min_length=1, max_length=2_000)],
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    window = await use_cases.retire_window(
        runtime.pool, window_id, reason, context, expected_version=expected
    )
    return records.versioned(WindowOut, _view(window))


@router.get(
    "/changes/{change_id}/conflicts",
    response_model=ChangeConflictsOut,
    summary="Every conflict of a change's planned window, with every CI it involves",
)
async def get_change_conflicts(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    hops: Annotated[int, Query(ge=0, le=use_cases.MAX_HOPS)] = use_cases.DEFAULT_HOPS,
) -> dict[str, Any]:
    change, found = await use_cases.change_conflicts(
        runtime.pool, change_id, context, hops=hops, metrics=_metrics(runtime)
    )
    return {
        "change_id": str(change.id),
        "planned_start": change.planned_start,
        "planned_end": change.planned_end,
        "hops": hops,
        "conflicts": [_conflict(c) for c in found],
    }


@router.post(
    "/schedule/conflicts",
    response_model=ConflictsOut,
    summary="The conflicts a window would have (check before asking for a change)",
)
async def post_hypothetical_conflicts(
    body: HypotheticalWindow,
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
) -> dict[str, Any]:
    if body.end <= body.start:
        raise invalid_field("end", "must be after start")
    planned = PlannedWork(
        start=body.start,
        end=body.end,
        ci_ids=tuple(dict.fromkeys(body.ci_ids)),
        implementer=body.implementer,
    )
    found = await use_cases.hypothetical_conflicts(
        runtime.pool, planned, context.tenant_id, hops=body.hops
    )
    return {"conflicts": [_conflict(c) for c in found]}


Start = Annotated[Timestamp | None, Query(alias="from", description="Default: now.")]
End = Annotated[Timestamp | None, Query(alias="to", description="Default: 31 days later.")]
Service = Annotated[
    str | None, Query(min_length=1, max_length=200, description="A business service id.")
]
Cis = Annotated[list[str] | None, Query(alias="ci", description="CI ids (repeatable).")]
States = Annotated[list[ChangeState] | None, Query(description="Change states (repeatable).")]


@router.get("/schedule", response_model=ScheduleOut, summary="Changes and windows in a period")
async def get_schedule(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    start: Start = None,
    end: End = None,
    service: Service = None,
    ci: Cis = None,
    state: States = None,
) -> dict[str, Any]:
    start = start or datetime.now(UTC)
    end = end or start + timedelta(days=31)
    view = await use_cases.schedule(
        runtime.pool,
        context.tenant_id,
        start,
        end,
        service=service,
        ci_ids=ci or (),
        states=state or (),
    )
    return {
        "from": view.start,
        "to": view.end,
        "changes": [
            {
                "id": c.id,
                "reference": c.reference,
                "title": c.title,
                "type": c.type,
                "state": c.state,
                "planned_start": c.planned_start,
                "planned_end": c.planned_end,
                "implementer": c.implementer,
                "affected_cis": list(c.affected_cis),
            }
            for c in view.changes
        ],
        "windows": [
            {
                "window": _view(w.window),
                "occurrences": [{"start": a, "end": b} for a, b in w.occurrences],
            }
            for w in view.windows
        ],
    }


@router.get(
    "/schedule.ics",
    summary="The schedule as an iCalendar feed (RFC 5545) for calendar clients",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {"schema": {"type": "string"}}}}},
)
async def get_schedule_feed(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    start: Annotated[
        Timestamp | None, Query(alias="from", description="Default: 31 days ago.")
    ] = None,
    end: Annotated[Timestamp | None, Query(alias="to", description="Default: 183 days on.")] = None,
    service: Service = None,
    ci: Cis = None,
) -> Response:
    return await feed_response(runtime, context.tenant_id, start, end, service, ci or ())


async def feed_response(
    runtime: ServiceRuntime,
    tenant_id: str,
    start: datetime | None,
    end: datetime | None,
    service: str | None,
    ci_ids: Sequence[str],
) -> Response:
    """The iCalendar feed of the tenant's schedule (default period: FEED_BEFORE to FEED_AFTER
    around now), as `GET /schedule.ics` and a feed token's secret URL serve it."""
    now = datetime.now(UTC)
    start = start or now - FEED_BEFORE
    end = end or max(start, now) + FEED_AFTER
    view = await use_cases.schedule(
        runtime.pool, tenant_id, start, end, service=service, ci_ids=ci_ids
    )
    text = icalendar.calendar(view.changes, [w.window for w in view.windows], now=now, until=end)
    return Response(
        text.encode(),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'inline; filename="change-schedule.ics"'},
    )


@router.get(
    "/schedule/next-free-slot",
    response_model=FreeSlotOut,
    summary="The first conflict-free slot in the next 90 days for CIs and a duration",
)
async def get_next_free_slot(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    ci: Annotated[list[str], Query(min_length=1, description="CI ids (repeatable).")],
    duration: Annotated[timedelta, Query(description="ISO 8601 duration, e.g. PT2H.")],
    after: Annotated[Timestamp | None, Query(description="Default: now.")] = None,
) -> dict[str, Any]:
    cis = list(dict.fromkeys(ci))
    slot = await use_cases.next_free_slot(
        runtime.pool, context.tenant_id, cis, duration, after or datetime.now(UTC)
    )
    return {
        "start": slot[0] if slot else None,
        "end": slot[1] if slot else None,
        "ci_ids": cis,
        "duration_seconds": int(duration.total_seconds()),
    }
