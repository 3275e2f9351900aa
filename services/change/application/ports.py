"""What the change records' use cases (rfc) ask of their unit of work besides the changes
themselves: the tenant's settings, the standard change catalogue, the evidence of an
implementation (backouts, reviews, suspected incidents), and the projections (CMDB, incidents).

Each is a `Protocol`: `ChangeUnitOfWork` implements them on its connection
(`adapters/change_records.py`), a unit test in memory (`tests/unit/fakes_change_rfc.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.change.adapters.incidents import SuspectedIncident
from services.change.domain.records import ChangeSettings, Template
from shared.cmdb.reads import ProjectedCi


@dataclass(frozen=True)
class Review:
    """A change's post-implementation review."""

    change_id: uuid.UUID
    what_happened: str
    lessons: str
    actions: tuple[str, ...]
    reviewer: str
    reviewed_at: datetime


@dataclass(frozen=True)
class Backout:
    """A backout executed while implementing a change."""

    change_id: uuid.UUID
    reason: str
    executed_by: str
    executed_at: datetime


class ChangeSettingsStore(Protocol):
    """The tenant's change settings (the defaults, version 0, until it saves its own)."""

    async def get(self) -> ChangeSettings: ...
    async def lock(self) -> None: ...
    async def write(self, settings: ChangeSettings, *, at: datetime, actor: str) -> None: ...


class Templates(Protocol):
    """The tenant's catalogue of standard changes."""

    async def get(self, template_id: uuid.UUID, *, lock: bool = False) -> Template | None: ...
    async def insert(self, template: Template) -> None: ...
    async def save(self, template: Template) -> None: ...
    async def all(self, *, active: bool | None) -> list[Template]: ...


class Evidence(Protocol):
    """What happened while a change was implemented, and its review."""

    async def backout(self, change_id: uuid.UUID) -> Backout | None: ...
    async def add_backout(self, backout: Backout) -> None: ...
    async def review(self, change_id: uuid.UUID) -> Review | None: ...
    async def add_review(self, review: Review) -> None: ...
    async def suspected(self, change_id: uuid.UUID) -> list[SuspectedIncident]: ...
    async def failed_deployments(self, change_id: uuid.UUID) -> list[str]: ...


class Projection(Protocol):
    """What the change service keeps of other services' events: CIs and incidents."""

    async def ci(self, ci_id: uuid.UUID) -> ProjectedCi | None: ...
    async def services_of_ci(self, ci_id: uuid.UUID) -> list[str]: ...
    async def unknown_incidents(self, incident_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]: ...
