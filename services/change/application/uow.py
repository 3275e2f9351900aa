"""The change service's unit of work: its repositories, and how a change's version is stored.

A use case opens one (`ChangeUnitOfWork(pool, context)`), reads and writes through the
repositories it gives (`uow.changes`, ...), and records the events of its aggregates with
`uow.record` (`store_new_change` and `store_change` below do it together with the row and its
history). The unit of work writes them to the outbox once, at commit.

Each repository is a `Protocol`, so a unit test can drive a use case with an in-memory unit of
work; `ChangeUnitOfWork` implements them on its one connection, scoped to its tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import asyncpg

from services.change.adapters import change_records
from services.change.adapters.approvals import PostgresCab
from services.change.adapters.changes import CHANGES
from services.change.adapters.unauthorized import PostgresUnauthorizedDetections
from services.change.adapters.windows import Around, PostgresSchedule
from services.change.application.ports import ChangeSettingsStore, Evidence, Projection, Templates
from services.change.domain.change import Change, ChangeChange
from services.change.domain.schedule import BookedChange, OpenMajorIncident
from services.change.domain.windows import ChangeWindow
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import EventPayload
from shared.records.sql import Condition
from shared.records.sql import next_number as take_number
from shared.uow import PostgresUnitOfWork, Reactions, TransactionStore, UnitOfWork


class Changes(Protocol):
    """The tenant's change records and their history."""

    async def get(self, change_id: uuid.UUID, *, lock: bool = False) -> Change | None: ...
    async def locked(self, change_id: uuid.UUID, expected: int | None) -> Change: ...
    async def insert(self, change: Change) -> None: ...
    async def save(self, change: Change) -> None: ...
    async def record_history(
        self, change: Change, *, action: str, changes: dict[str, Any]
    ) -> None: ...
    async def history(self, change_id: uuid.UUID) -> list[dict[str, Any]]: ...
    async def search(
        self, where: Sequence[Condition], *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Change]: ...
    async def next_number(self) -> int: ...


class UnauthorizedDetections(Protocol):
    """The detections of unauthorized changes that opened a change (`application/unauthorized.py`),
    and the business services the CMDB projection says a CI supports."""

    async def seen(self, detection_id: uuid.UUID) -> bool: ...
    async def record(
        self,
        detection_id: uuid.UUID,
        *,
        change_id: uuid.UUID,
        ci_id: uuid.UUID,
        found_by: str,
        detected_at: datetime,
    ) -> None: ...
    async def services_of(self, ci_id: uuid.UUID) -> Sequence[str]: ...


# --- the change schedule (schedule) ---
class Schedule(Protocol):
    """The tenant's maintenance and blackout windows, and what the schedule reads around a
    planned window: the CMDB neighbourhood, changes holding places, open major incidents, the
    conflicts last computed per change, business calendars' time zones."""

    async def window(self, window_id: uuid.UUID) -> ChangeWindow | None: ...
    async def locked_window(self, window_id: uuid.UUID, expected: int | None) -> ChangeWindow: ...
    async def insert_window(self, window: ChangeWindow) -> None: ...
    async def save_window(self, window: ChangeWindow) -> None: ...
    async def record_window_history(
        self, window: ChangeWindow, *, action: str, changes: dict[str, Any]
    ) -> None: ...
    async def window_history(self, window_id: uuid.UUID) -> list[dict[str, Any]]: ...
    async def search_windows(
        self, where: Sequence[Condition], *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChangeWindow]: ...
    async def next_window_number(self) -> int: ...
    async def active_windows(self) -> list[ChangeWindow]: ...
    async def neighbourhood(
        self, ci_ids: Sequence[str], hops: int
    ) -> dict[str, dict[str, int]]: ...
    async def services_of(self, ci_ids: Sequence[str]) -> dict[str, tuple[str, ...]]: ...
    async def around(
        self,
        ci_ids: Sequence[str],
        hops: int,
        start: datetime,
        end: datetime,
        *,
        services: Sequence[str],
        implementer: str | None,
    ) -> Around: ...
    async def known_cis(self, ci_ids: Sequence[str]) -> set[str]: ...
    async def service_known(self, service: str) -> bool: ...
    async def cis_of_service(self, service: str) -> list[str]: ...
    async def booked_changes(
        self, start: datetime, end: datetime, *, ci_ids: Sequence[str], implementer: str | None
    ) -> list[BookedChange]: ...
    async def major_incidents(
        self, services: Sequence[str], ci_ids: Sequence[str]
    ) -> list[OpenMajorIncident]: ...
    async def last_conflicts(
        self, change_id: uuid.UUID
    ) -> tuple[str, list[dict[str, Any]]] | None: ...
    async def keep_conflicts(
        self, change_id: uuid.UUID, fingerprint: str, conflicts: list[dict[str, Any]], now: datetime
    ) -> bool: ...
    async def calendar_zone(self, name: str) -> str | None: ...
    async def changes_in(
        self,
        start: datetime,
        end: datetime,
        *,
        ci_ids: Sequence[str],
        states: Sequence[str],
        limit: int,
    ) -> list[Change]: ...


class ChangeWork(UnitOfWork):
    """What a change use case may ask of its unit of work (real or fake)."""

    changes: Changes
    unauthorized: UnauthorizedDetections
    # Change records (rfc): settings, the standard change catalogue, evidence, projections.
    change_settings: ChangeSettingsStore
    templates: Templates
    evidence: Evidence
    projection: Projection
    # Risk and approvals (cab): rule sets, assessments, approval steps, decisions, CAB meetings.
    cab: PostgresCab
    schedule: Schedule


async def store_new_change(uow: ChangeWork, change: Change, events: Sequence[EventPayload]) -> None:
    """A new change, its first history entry, and its events."""
    await uow.changes.insert(change)
    await uow.changes.record_history(change, action="created", changes={})
    uow.record(str(change.id), change.version, events)


async def store_change(uow: ChangeWork, change: ChangeChange, action: str) -> Change:
    """A change's new version: the row, its history entry, and its events."""
    await uow.changes.save(change.change)
    await uow.changes.record_history(change.change, action=action, changes=change.changes)
    uow.record(str(change.change.id), change.change.version, change.events)
    return change.change


class _Changes(TransactionStore):
    async def get(self, change_id: uuid.UUID, *, lock: bool = False) -> Change | None:
        return await CHANGES.get(self._conn, self._tenant, change_id, lock=lock)

    async def locked(self, change_id: uuid.UUID, expected: int | None) -> Change:
        return await CHANGES.locked(self._conn, self._tenant, change_id, expected)

    async def insert(self, change: Change) -> None:
        await CHANGES.insert(self._conn, change)

    async def save(self, change: Change) -> None:
        await CHANGES.save(self._conn, change)

    async def record_history(self, change: Change, *, action: str, changes: dict[str, Any]) -> None:
        await CHANGES.record_history(self._conn, change, action=action, changes=changes)

    async def history(self, change_id: uuid.UUID) -> list[dict[str, Any]]:
        return await CHANGES.history(self._conn, self._tenant, change_id)

    async def search(
        self, where: Sequence[Condition], *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Change]:
        return await CHANGES.search(self._conn, self._tenant, where, after=after, limit=limit)

    async def next_number(self) -> int:
        return await take_number(self._conn, self._tenant, CHANGES.kind)


def _service_reactions() -> Reactions[Any]:
    # Imported here: the reactions' use cases import this module.
    from services.change.application.reactions import CHANGE_REACTIONS

    return CHANGE_REACTIONS


class ChangeUnitOfWork(PostgresUnitOfWork, ChangeWork):
    """The change service's unit of work on PostgreSQL: one tenant transaction on a pool, or,
    with `joining(conn, context)`, a block inside a transaction the caller holds (a consumer's),
    which writes its events at its end and leaves the commit to the caller."""

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        context: RequestContext,
        reactions: Reactions[Any] | None = None,
        *,
        connection: Connection | None = None,
    ) -> None:
        # Without the service's reactions a change could enter authorize and no approval round
        # would open: every unit of work gets them unless the caller names others.
        reactions = reactions if reactions is not None else _service_reactions()
        super().__init__(pool, context, reactions)  # type: ignore[arg-type]
        self._joined = connection
        self.changes = _Changes(self)
        self.unauthorized = PostgresUnauthorizedDetections(self)
        self.change_settings = change_records.PgChangeSettings(self)
        self.templates = change_records.PgTemplates(self)
        self.evidence = change_records.PgEvidence(self)
        self.projection = change_records.PgProjection(self)
        self.cab = PostgresCab(self)
        self.schedule: Schedule = PostgresSchedule(self)

    @classmethod
    def joining(
        cls, conn: Connection, context: RequestContext, reactions: Reactions[Any] | None = None
    ) -> Self:
        """A unit of work inside the caller's transaction on `conn` (whose tenant it must set)."""
        return cls(None, context, reactions, connection=conn)

    @property
    def conn(self) -> Connection:
        """The transaction's connection."""
        if self._joined is not None:
            return self._joined
        return super().conn

    async def __aenter__(self) -> Self:
        if self._joined is not None:
            return self
        return await super().__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined is None:
            await super().__aexit__(kind, exc, tb)
        elif kind is None and not self._committed:
            await self.commit()
