"""An in-memory unit of work for the change records' use cases (rfc): every repository a dict,
the events a list (`written`, in order, as the outbox would get them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from services.change.adapters.incidents import SuspectedIncident
from services.change.application.ports import Backout, Review
from services.change.domain.change import Change
from services.change.domain.records import ChangeSettings, Template
from shared.cmdb.reads import ProjectedCi
from shared.context import RequestContext
from shared.errors import NotFound, StaleVersion
from shared.uow import Recorded, UnitOfWork

TENANT = "tenant-a"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def context(actor: str = "carol") -> RequestContext:
    return RequestContext(TENANT, actor, "corr-1")


def a_ci(ci_class: str = "server", status: str = "active") -> ProjectedCi:
    return ProjectedCi(
        id=str(uuid.uuid4()),
        ci_class=ci_class,
        name=f"ci-{uuid.uuid4().hex[:4]}",
        status=status,
        owner_team=None,
        criticality=3,
        external_ids={},
        version=1,
        updated_at=NOW,
    )


class FakeChanges:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Change] = {}
        self.log: dict[uuid.UUID, list[dict[str, Any]]] = {}
        self.number = 0

    async def get(self, change_id: uuid.UUID, *, lock: bool = False) -> Change | None:
        return self.rows.get(change_id)

    async def locked(self, change_id: uuid.UUID, expected: int | None) -> Change:
        change = self.rows.get(change_id)
        if change is None:
            raise NotFound("change", str(change_id))
        if expected is not None and expected != change.version:
            raise StaleVersion("the change", change.version, expected)
        return change

    async def insert(self, change: Change) -> None:
        self.rows[change.id] = change

    async def save(self, change: Change) -> None:
        assert self.rows[change.id].version == change.version - 1
        self.rows[change.id] = change

    async def record_history(self, change: Change, *, action: str, changes: dict[str, Any]) -> None:
        entry = {"version": change.version, "action": action, "changes": changes}
        self.log.setdefault(change.id, []).append(entry)

    async def history(self, change_id: uuid.UUID) -> list[dict[str, Any]]:
        return self.log.get(change_id, [])

    async def search(self, where: Sequence[Any], *, after: Any, limit: int) -> list[Change]:
        return list(self.rows.values())[:limit]

    async def next_number(self) -> int:
        self.number += 1
        return self.number


@dataclass
class FakeSettings:
    settings: ChangeSettings = field(default_factory=ChangeSettings)

    async def get(self) -> ChangeSettings:
        return self.settings

    async def lock(self) -> None:
        return None

    async def write(self, settings: ChangeSettings, *, at: datetime, actor: str) -> None:
        self.settings = settings


@dataclass
class FakeTemplates:
    rows: dict[uuid.UUID, Template] = field(default_factory=dict)

    async def get(self, template_id: uuid.UUID, *, lock: bool = False) -> Template | None:
        return self.rows.get(template_id)

    async def insert(self, template: Template) -> None:
        self.rows[template.id] = template

    async def save(self, template: Template) -> None:
        self.rows[template.id] = template

    async def all(self, *, active: bool | None) -> list[Template]:
        return [t for t in self.rows.values() if active is None or t.active == active]


@dataclass
class FakeEvidence:
    backouts: dict[uuid.UUID, Backout] = field(default_factory=dict)
    reviews: dict[uuid.UUID, Review] = field(default_factory=dict)
    suspicions: list[tuple[uuid.UUID, SuspectedIncident]] = field(default_factory=list)
    failed: list[tuple[uuid.UUID, str]] = field(default_factory=list)

    async def backout(self, change_id: uuid.UUID) -> Backout | None:
        return self.backouts.get(change_id)

    async def add_backout(self, backout: Backout) -> None:
        self.backouts[backout.change_id] = backout

    async def review(self, change_id: uuid.UUID) -> Review | None:
        return self.reviews.get(change_id)

    async def add_review(self, review: Review) -> None:
        self.reviews[review.change_id] = review

    async def suspected(self, change_id: uuid.UUID) -> list[SuspectedIncident]:
        return [s for c, s in self.suspicions if c == change_id]

    async def failed_deployments(self, change_id: uuid.UUID) -> list[str]:
        return [d for c, d in self.failed if c == change_id]


@dataclass
class FakeProjection:
    cis: dict[uuid.UUID, ProjectedCi] = field(default_factory=dict)
    services: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    incidents: set[uuid.UUID] = field(default_factory=set)

    def add_ci(self, ci: ProjectedCi, services: Sequence[str] = ()) -> uuid.UUID:
        ci_id = uuid.UUID(ci.id)
        self.cis[ci_id] = ci
        self.services[ci_id] = sorted(services)
        return ci_id

    async def ci(self, ci_id: uuid.UUID) -> ProjectedCi | None:
        return self.cis.get(ci_id)

    async def services_of_ci(self, ci_id: uuid.UUID) -> list[str]:
        return self.services.get(ci_id, [])

    async def unknown_incidents(self, incident_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return [i for i in incident_ids if i not in self.incidents]


class FakeChangeUnitOfWork(UnitOfWork):
    """The change records' unit of work in memory; `written` holds the committed events."""

    def __init__(self, ctx: RequestContext | None = None) -> None:
        super().__init__(ctx or context())
        self.changes = FakeChanges()
        self.change_settings = FakeSettings()
        self.templates = FakeTemplates()
        self.evidence = FakeEvidence()
        self.projection = FakeProjection()
        self.written: list[Recorded] = []

    def acting_as(self, actor: str) -> FakeChangeUnitOfWork:
        """The same stores, another caller."""
        self.context = replace(self.context, actor=actor)
        return self

    async def __aenter__(self) -> FakeChangeUnitOfWork:
        # Each `async with` is a unit of work of its own on the same stores.
        self._recorded, self._reacted, self._committed = [], 0, False
        return self

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        self.written = list(events)

    async def _commit(self) -> None:
        return None

    async def _rollback(self) -> None:
        self._recorded.clear()
