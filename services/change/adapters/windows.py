"""The change schedule in PostgreSQL: windows (the shared record repository over
`change_windows`), the changes holding places in a period, the CMDB neighbourhood of a set of
CIs, the conflicts last computed per change, and the business calendars' time zones.

Plain, parameterised SQL, always scoped to a tenant (row-level security applies too).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.change.adapters.changes import CHANGES
from services.change.adapters.incidents import open_major_incidents
from services.change.domain.change import Change
from services.change.domain.schedule import BookedChange, OpenMajorIncident
from services.change.domain.windows import ChangeWindow
from shared.cmdb.reads import service_by_id
from shared.db import Connection
from shared.events.catalogue import CalendarDefinedV1
from shared.records.sql import Condition, RecordTable
from shared.uow import TransactionStore

WINDOWS = RecordTable(
    ChangeWindow,
    table="change_windows",
    history="change_window_history",
    key="window_id",
    kind="change_window",
    what="the window",
    arrays=("ci_ids", "exclusions"),
)

# The CIs one relationship up (what depends on them: `up`) or down (what they depend on) from
# a set, in one statement for both directions.
_STEP = (
    "SELECT dependency_id AS ci, dependent_id AS next, true AS up FROM cmdb_relationships"
    " WHERE tenant_id = $1 AND dependency_id = ANY($2::text[]) AND NOT removed"
    " UNION ALL"
    " SELECT dependent_id, dependency_id, false FROM cmdb_relationships"
    " WHERE tenant_id = $1 AND dependent_id = ANY($3::text[]) AND NOT removed"
)


def as_uuids(ci_ids: Sequence[str]) -> list[uuid.UUID]:
    """The CI ids that are UUIDs (a change's affected CIs are; a projection id need not be)."""
    found = []
    for ci in ci_ids:
        try:
            found.append(uuid.UUID(ci))
        except ValueError:
            continue
    return found


async def active_windows(conn: Connection, tenant_id: str) -> list[ChangeWindow]:
    """The tenant's active windows, by number."""
    rows = await conn.fetch(
        f"{WINDOWS.select} WHERE r.tenant_id = $1 AND r.state = 'active' ORDER BY r.number",
        tenant_id,
    )
    return [WINDOWS.from_row(r) for r in rows]


async def neighbourhood(
    conn: Connection,
    tenant_id: str,
    ci_ids: Sequence[str],
    hops: int,
    *,
    first_step: Sequence[tuple[str, str, bool]] | None = None,
) -> dict[str, dict[str, int]]:
    """For each CI, the CIs within `hops` relationships up or downstream and their distance
    (the CI itself at 0). Up and down are walked apart, never mixed: siblings that share a
    dependency are not neighbours. One query per direction and hop for all the CIs at once
    (`shared.cmdb.walks.walk` is one CI's walk: a round trip per CI here); `first_step`: the
    edges (ci, next, up) of the first hop when the caller has read them already (`around`)."""
    near: dict[str, dict[str, int]] = {ci: {ci: 0} for ci in ci_ids}
    # direction (up?) -> origin -> the CIs reached at the last depth in that direction
    frontier: dict[bool, dict[str, set[str]]] = {
        True: {ci: {ci} for ci in ci_ids},
        False: {ci: {ci} for ci in ci_ids},
    }
    for depth in range(1, hops + 1):
        wanted = {
            up: sorted({ci for reached in by_origin.values() for ci in reached})
            for up, by_origin in frontier.items()
        }
        if not wanted[True] and not wanted[False]:
            break
        edges: dict[tuple[bool, str], list[str]] = {}
        if depth == 1 and first_step is not None:
            step = first_step
        else:
            rows = await conn.fetch(_STEP, tenant_id, wanted[True], wanted[False])
            step = [(r["ci"], r["next"], r["up"]) for r in rows]
        for ci, following_ci, up in step:
            edges.setdefault((up, ci), []).append(following_ci)
        for up, by_origin in frontier.items():
            following: dict[str, set[str]] = {}
            for origin, reached in by_origin.items():
                mine = near[origin]
                found = {n for ci in reached for n in edges.get((up, ci), ()) if n not in mine}
                for ci in found:
                    mine[ci] = depth
                if found:
                    following[origin] = found
            frontier[up] = following
    return near


async def services_of(
    conn: Connection, tenant_id: str, ci_ids: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """The business services each CI supports (none for a CI the projection does not know)."""
    rows = await conn.fetch(
        "SELECT ci_id, services FROM cmdb_ci_services WHERE tenant_id = $1 AND ci_id = ANY($2)",
        tenant_id,
        list(ci_ids),
    )
    found = {r["ci_id"]: tuple(r["services"]) for r in rows}
    return {ci: found.get(ci, ()) for ci in ci_ids}


async def known_cis(conn: Connection, tenant_id: str, ci_ids: Sequence[str]) -> set[str]:
    """Which of these CIs the CMDB projection knows."""
    rows = await conn.fetch(
        "SELECT id FROM cmdb_cis WHERE tenant_id = $1 AND id = ANY($2)", tenant_id, list(ci_ids)
    )
    return {r["id"] for r in rows}


async def cis_of_service(conn: Connection, tenant_id: str, service: str) -> list[str]:
    """The CIs that support a business service (and the service's own CI)."""
    rows = await conn.fetch(
        "SELECT ci_id FROM cmdb_ci_services WHERE tenant_id = $1 AND $2 = ANY(services)",
        tenant_id,
        service,
    )
    return sorted({service, *(r["ci_id"] for r in rows)})


def _booked(row: Any) -> BookedChange:
    return BookedChange(
        id=row["id"],
        number=row["number"],
        state=row["state"],
        start=row["planned_start"],
        end=row["planned_end"],
        ci_ids=tuple(str(ci) for ci in row["affected_cis"]),
        implementer=row["implementer"],
    )


async def booked_changes(
    conn: Connection,
    tenant_id: str,
    start: datetime,
    end: datetime,
    *,
    ci_ids: Sequence[str],
    implementer: str | None,
) -> list[BookedChange]:
    """Changes (not cancelled or closed) whose planned window overlaps [start, end), on one of
    these CIs or by this implementer."""
    # The window index narrows to the few changes of a period; matching thousands of CIs
    # against them here is cheaper than an array overlap over the GIN index.
    wanted = set(ci_ids)
    return [
        change
        for change in await overlapping_changes(conn, tenant_id, start, end)
        if (implementer is not None and change.implementer == implementer)
        or not wanted.isdisjoint(change.ci_ids)
    ]


async def overlapping_changes(
    conn: Connection, tenant_id: str, start: datetime, end: datetime
) -> list[BookedChange]:
    """Every change (not cancelled or closed) whose planned window overlaps [start, end): the
    raw overlap query the conflict detection builds on."""
    rows = await conn.fetch(
        "SELECT id, number, state, planned_start, planned_end, affected_cis, implementer"
        " FROM changes WHERE tenant_id = $1 AND planned_start < $3 AND planned_end > $2"
        " AND state <> ALL('{cancelled,closed}'::text[]) ORDER BY planned_start, number",
        tenant_id,
        start,
        end,
    )
    return [_booked(r) for r in rows]


@dataclass(frozen=True)
class Around:
    """What the schedule reads around a planned window (`around`): each CI's neighbourhood,
    its business services, the changes overlapping the window on the CIs reached or by the
    implementer, and the open major incidents on the CIs or their services."""

    near: dict[str, dict[str, int]]
    services: dict[str, tuple[str, ...]]
    changes: list[BookedChange]
    major_incidents: list[OpenMajorIncident]


# `around`'s one statement: the first hop of `neighbourhood` ($2 both ways), `services_of`,
# `overlapping_changes` and `open_major_incidents` (on the CIs' services and the ones named),
# each as a JSON array of arrays.
_AROUND = (
    "SELECT coalesce((SELECT jsonb_agg(jsonb_build_array(e.ci, e.next, e.up)) FROM ("  # noqa: S608 (fixed text)
    + _STEP.replace("$3", "$2")
    + ") AS e), '[]') AS step,"
    " coalesce((SELECT jsonb_agg(jsonb_build_array(ci_id, services)) FROM cmdb_ci_services"
    " WHERE tenant_id = $1 AND ci_id = ANY($2::text[])), '[]') AS services,"
    " coalesce((SELECT jsonb_agg(jsonb_build_array(id, number, state, planned_start,"
    " planned_end, affected_cis, implementer) ORDER BY planned_start, number) FROM changes"
    " WHERE tenant_id = $1 AND planned_start < $4 AND planned_end > $3"
    " AND state <> ALL('{cancelled,closed}'::text[])), '[]') AS changes,"
    " coalesce((SELECT jsonb_agg(jsonb_build_array(id, title, services, ci_id)"
    " ORDER BY declared_at NULLS LAST, id) FROM proj_incidents"
    " WHERE tenant_id = $1 AND major AND resolved_at IS NULL"
    " AND (services && ($5::text[] || (SELECT coalesce(array_agg(s), '{}') FROM"
    " cmdb_ci_services AS c, unnest(c.services) AS s WHERE c.tenant_id = $1"
    " AND c.ci_id = ANY($2::text[]))) OR ci_id = ANY($6::uuid[]))), '[]') AS incidents"
)


async def around(
    conn: Connection,
    tenant_id: str,
    ci_ids: Sequence[str],
    hops: int,
    start: datetime,
    end: datetime,
    *,
    services: Sequence[str],
    implementer: str | None,
) -> Around:
    """`neighbourhood`, `services_of`, `booked_changes` and the open major incidents of a
    planned window in one round trip (and one more per hop beyond the first): what the
    conflict detection and the deployment gate read on every call."""
    wanted = sorted(set(ci_ids))
    row = await conn.fetchrow(
        _AROUND, tenant_id, wanted, start, end, sorted(set(services)), as_uuids(ci_ids)
    )
    assert row is not None  # one row, always
    first_step = [(ci, following, up) for ci, following, up in row["step"]]
    near = await neighbourhood(conn, tenant_id, ci_ids, hops, first_step=first_step)
    found = {ci: tuple(names) for ci, names in row["services"]}
    reachable = {ci for reach in near.values() for ci in reach}
    booked = [
        BookedChange(
            id=uuid.UUID(id_),
            number=number,
            state=state,
            start=datetime.fromisoformat(planned_start),
            end=datetime.fromisoformat(planned_end),
            ci_ids=tuple(cis or ()),
            implementer=who,
        )
        for id_, number, state, planned_start, planned_end, cis, who in row["changes"]
    ]
    return Around(
        near=near,
        services={ci: found.get(ci, ()) for ci in ci_ids},
        changes=[
            change
            for change in booked
            if (implementer is not None and change.implementer == implementer)
            or not reachable.isdisjoint(change.ci_ids)
        ],
        major_incidents=[
            OpenMajorIncident(id=id_, title=title, services=tuple(names), ci_id=ci)
            for id_, title, names, ci in row["incidents"]
        ],
    )


async def last_conflicts(
    conn: Connection, tenant_id: str, change_id: uuid.UUID
) -> tuple[str, list[dict[str, Any]]] | None:
    """The fingerprint and the conflicts last computed for the change, or None."""
    row = await conn.fetchrow(
        "SELECT fingerprint, conflicts FROM change_conflicts"
        " WHERE tenant_id = $1 AND change_id = $2",
        tenant_id,
        change_id,
    )
    return (row["fingerprint"], list(row["conflicts"])) if row is not None else None


async def keep_conflicts(
    conn: Connection,
    tenant_id: str,
    change_id: uuid.UUID,
    fingerprint: str,
    conflicts: list[dict[str, Any]],
    now: datetime,
) -> bool:
    """Keep the conflicts computed for a change; False when the same were already kept (a
    concurrent computation got there first, and published them)."""
    status = await conn.execute(
        "INSERT INTO change_conflicts (tenant_id, change_id, fingerprint, conflicts, computed_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, change_id) DO UPDATE"
        " SET fingerprint = EXCLUDED.fingerprint, conflicts = EXCLUDED.conflicts,"
        " computed_at = EXCLUDED.computed_at"
        " WHERE change_conflicts.fingerprint <> EXCLUDED.fingerprint",
        tenant_id,
        change_id,
        fingerprint,
        conflicts,
        now,
    )
    return status.endswith(" 1")


async def upsert_calendar(conn: Connection, tenant_id: str, calendar: CalendarDefinedV1) -> bool:
    """Apply a calendar definition unless a newer version is stored."""
    status = await conn.execute(
        "INSERT INTO change_calendars (tenant_id, name, time_zone, spec, version)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO UPDATE"
        " SET time_zone = EXCLUDED.time_zone, spec = EXCLUDED.spec, version = EXCLUDED.version"
        " WHERE change_calendars.version < EXCLUDED.version",
        tenant_id,
        calendar.name,
        calendar.calendar.timezone,
        json.loads(calendar.calendar.model_dump_json()),
        calendar.version,
    )
    return status.endswith(" 1")


async def calendar_zone(conn: Connection, tenant_id: str, name: str) -> str | None:
    """The time zone of the tenant's business calendar of this name, or None."""
    value = await conn.fetchval(
        "SELECT time_zone FROM change_calendars WHERE tenant_id = $1 AND name = $2",
        tenant_id,
        name,
    )
    return str(value) if value is not None else None


async def changes_in(
    conn: Connection,
    tenant_id: str,
    start: datetime,
    end: datetime,
    *,
    ci_ids: Sequence[str],
    states: Sequence[str],
    limit: int,
) -> list[Change]:
    """Changes whose planned window overlaps [start, end), by planned start: on any of these
    CIs (all without), in one of these states (any without), up to `limit`."""
    params: list[Any] = [tenant_id, start, end]
    where = " WHERE r.tenant_id = $1 AND r.planned_start < $3 AND r.planned_end > $2"
    if ci_ids:
        params.append(as_uuids(ci_ids))
        where += f" AND r.affected_cis && ${len(params)}::uuid[]"
    if states:
        params.append(list(states))
        where += f" AND r.state = ANY(${len(params)}::text[])"
    params.append(limit)
    query = f"{CHANGES.select}{where} ORDER BY r.planned_start, r.number LIMIT ${len(params)}"
    return [CHANGES.from_row(r) for r in await conn.fetch(query, *params)]


class PostgresSchedule(TransactionStore):
    """The schedule's reads and writes in the tenant transaction of a unit of work."""

    async def window(self, window_id: uuid.UUID) -> ChangeWindow | None:
        return await WINDOWS.get(self._conn, self._tenant, window_id)

    async def locked_window(self, window_id: uuid.UUID, expected: int | None) -> ChangeWindow:
        return await WINDOWS.locked(self._conn, self._tenant, window_id, expected)

    async def insert_window(self, window: ChangeWindow) -> None:
        await WINDOWS.insert(self._conn, window)

    async def save_window(self, window: ChangeWindow) -> None:
        await WINDOWS.save(self._conn, window)

    async def record_window_history(
        self, window: ChangeWindow, *, action: str, changes: dict[str, Any]
    ) -> None:
        await WINDOWS.record_history(self._conn, window, action=action, changes=changes)

    async def window_history(self, window_id: uuid.UUID) -> list[dict[str, Any]]:
        return await WINDOWS.history(self._conn, self._tenant, window_id)

    async def search_windows(
        self, where: Sequence[Condition], *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChangeWindow]:
        return await WINDOWS.search(self._conn, self._tenant, where, after=after, limit=limit)

    async def next_window_number(self) -> int:
        return await WINDOWS.next_number(self._conn, self._tenant)

    async def active_windows(self) -> list[ChangeWindow]:
        return await active_windows(self._conn, self._tenant)

    async def neighbourhood(self, ci_ids: Sequence[str], hops: int) -> dict[str, dict[str, int]]:
        return await neighbourhood(self._conn, self._tenant, ci_ids, hops)

    async def services_of(self, ci_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        return await services_of(self._conn, self._tenant, ci_ids)

    async def around(
        self,
        ci_ids: Sequence[str],
        hops: int,
        start: datetime,
        end: datetime,
        *,
        services: Sequence[str],
        implementer: str | None,
    ) -> Around:
        return await around(
            self._conn,
            self._tenant,
            ci_ids,
            hops,
            start,
            end,
            services=services,
            implementer=implementer,
        )

    async def known_cis(self, ci_ids: Sequence[str]) -> set[str]:
        return await known_cis(self._conn, self._tenant, ci_ids)

    async def service_known(self, service: str) -> bool:
        return await service_by_id(self._conn, self._tenant, service) is not None

    async def cis_of_service(self, service: str) -> list[str]:
        return await cis_of_service(self._conn, self._tenant, service)

    async def booked_changes(
        self, start: datetime, end: datetime, *, ci_ids: Sequence[str], implementer: str | None
    ) -> list[BookedChange]:
        return await booked_changes(
            self._conn, self._tenant, start, end, ci_ids=ci_ids, implementer=implementer
        )

    async def major_incidents(
        self, services: Sequence[str], ci_ids: Sequence[str]
    ) -> list[OpenMajorIncident]:
        found = await open_major_incidents(
            self._conn, self._tenant, services=services, ci_ids=as_uuids(ci_ids)
        )
        return [
            OpenMajorIncident(
                id=str(i.incident_id),
                title=i.title,
                services=i.services,
                ci_id=str(i.ci_id) if i.ci_id else None,
            )
            for i in found
        ]

    async def last_conflicts(self, change_id: uuid.UUID) -> tuple[str, list[dict[str, Any]]] | None:
        return await last_conflicts(self._conn, self._tenant, change_id)

    async def keep_conflicts(
        self,
        change_id: uuid.UUID,
        fingerprint: str,
        conflicts: list[dict[str, Any]],
        now: datetime,
    ) -> bool:
        return await keep_conflicts(
            self._conn, self._tenant, change_id, fingerprint, conflicts, now
        )

    async def calendar_zone(self, name: str) -> str | None:
        return await calendar_zone(self._conn, self._tenant, name)

    async def changes_in(
        self,
        start: datetime,
        end: datetime,
        *,
        ci_ids: Sequence[str],
        states: Sequence[str],
        limit: int,
    ) -> list[Change]:
        return await changes_in(
            self._conn, self._tenant, start, end, ci_ids=ci_ids, states=states, limit=limit
        )
