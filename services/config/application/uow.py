"""The config service's unit of work: one use case's transaction and the repositories it gives.

A use case takes a `ConfigUnit`, opens it with `async with`, reads and writes through its
repositories (each one a `Protocol` here, bound to the unit's tenant), and records the events
of what it changed with `uow.record(subject, version, events)`. Leaving the block writes them
to the outbox, in order, and commits; an exception rolls everything back. `ConfigUnitOfWork` is
the PostgreSQL one (`adapters/repositories.py`); unit tests pass an in-memory fake
(`tests/unit/fakes_config.py`) through the same use cases.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from services.config.adapters import repositories
from services.config.adapters.membership import Supported
from services.config.domain.catalogue import SlaPolicyDefinition
from services.config.domain.change_control import ChangeControl, ProjectedChange
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.uow import PostgresUnitOfWork, UnitOfWork


class CiRepository(Protocol):
    """Configuration items, their versions and external ids, and the tenant's CI classes."""

    async def get(
        self, ci_id: uuid.UUID, *, for_update: bool = False
    ) -> ConfigurationItem | None: ...

    async def add(self, ci: ConfigurationItem) -> None: ...

    async def update(self, ci: ConfigurationItem) -> None: ...

    async def record_version(
        self,
        ci: ConfigurationItem,
        *,
        changed: list[str],
        reason: str | None,
        change_ref: str | None,
        source: str | None,
        change_id: uuid.UUID | None = None,
    ) -> None: ...

    async def claim_external_ids(self, ci: ConfigurationItem) -> list[str]:
        """Point the CI's external ids at it; the sources whose id another CI already has."""
        ...

    async def tenant_class(self, name: str) -> dict[str, Any] | None: ...

    async def tenant_classes(self) -> list[dict[str, Any]]: ...

    async def define_class(
        self,
        name: str,
        *,
        description: str,
        attribute_schema: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> int:
        """Create or replace a tenant class; its new version."""
        ...


class RelationshipRepository(Protocol):
    """Typed relationships between CIs, in place or removed."""

    async def add(
        self,
        *,
        type_: str,
        source_id: uuid.UUID,
        target_id: uuid.UUID,
        actor: str,
        now: datetime,
    ) -> dict[str, Any] | None:
        """The new relationship, or None if the same one is in place."""
        ...

    async def in_place(
        self, type_: str, source_id: uuid.UUID, target_id: uuid.UUID
    ) -> dict[str, Any] | None: ...

    async def remove(
        self, relationship_id: uuid.UUID, *, actor: str, now: datetime
    ) -> dict[str, Any] | None:
        """The removed relationship, or None if none with this id is in place."""
        ...

    async def walk(
        self,
        ci_id: uuid.UUID,
        *,
        direction: Literal["upward", "downward"],
        depth: int,
        max_paths: int,
    ) -> tuple[bool, str, str]:
        """(truncated, items, business services) of an impact walk, as JSON text."""
        ...


class MembershipRepository(Protocol):
    """The business services each CI supports (the derived fact)."""

    async def lock_tenant(self) -> None:
        """Serialise recomputations of the tenant's sets until the transaction ends."""
        ...

    async def supported(self, seeds: Sequence[uuid.UUID]) -> list[Supported]:
        """(CI, services now, services recorded, sequence) of the seeds and what they need."""
        ...

    async def record(
        self, changes: Sequence[tuple[uuid.UUID, list[str], int]], now: datetime
    ) -> None: ...


class CatalogueRepository(Protocol):
    """Calendars, SLA policies, their coverage of business services, and announcements."""

    async def calendar(self, name: str, *, lock: str | None = None) -> dict[str, Any] | None: ...

    async def save_calendar(
        self, name: str, *, description: str, spec: CalendarSpec, actor: str, now: datetime
    ) -> int: ...

    async def policies_using(self, calendar: str) -> list[dict[str, Any]]: ...

    async def policy(self, name: str, *, for_update: bool = False) -> dict[str, Any] | None: ...

    async def save_policy(
        self,
        name: str,
        definition: SlaPolicyDefinition,
        *,
        version: int,
        actor: str,
        now: datetime,
    ) -> None: ...

    async def bump_policy(self, name: str, *, actor: str, now: datetime) -> int: ...

    async def record_policy_version(
        self,
        name: str,
        definition: SlaPolicyDefinition,
        *,
        version: int,
        cause: str,
        calendar_version: int,
        calendar: CalendarSpec,
        actor: str,
        now: datetime,
    ) -> None: ...

    async def other_default(self, name: str) -> str | None: ...

    async def covered_elsewhere(
        self, name: str, services: list[uuid.UUID]
    ) -> dict[uuid.UUID, str]: ...

    async def set_coverage(self, name: str, services: list[uuid.UUID]) -> None:
        """Raises asyncpg.UniqueViolationError if another policy took one meanwhile."""
        ...

    async def covering_policy(self, service_id: uuid.UUID) -> str | None: ...

    async def next_announcement(self, service_id: uuid.UUID) -> int: ...

    async def cis_share_locked(
        self, ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, ConfigurationItem]: ...


class BaselineRepository(Protocol):
    """Named instants of the CMDB."""

    async def get(self, name: str) -> dict[str, Any] | None: ...

    async def counts_at(self, at: datetime) -> tuple[int, int]:
        """(CIs not retired, relationships in place) at an instant."""
        ...

    async def insert(self, baseline: dict[str, Any]) -> bool:
        """False if the name was taken meanwhile (nothing stored)."""
        ...

    async def prepare_for_history(self) -> None:
        """Tune the transaction for the queries over the whole history (no JIT)."""
        ...

    async def ci_changes_summary(self, earlier: datetime, later: datetime) -> dict[str, int]:
        """CIs `added`, `removed` and `changed` between two instants."""
        ...

    async def relationship_changes_summary(
        self, earlier: datetime, later: datetime
    ) -> dict[str, int]:
        """Relationships `added` and `removed` between two instants."""
        ...

    async def ci_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to `limit` changed CIs by id after `after`: id, change, fields, before, after."""
        ...

    async def relationship_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to `limit` relationships added or removed, by id after `after`."""
        ...


class ImportRepository(Protocol):
    """Import runs: their Idempotency-Key, status and outcome counts."""

    async def start(
        self,
        import_id: uuid.UUID,
        *,
        source: str,
        format_: str,
        actor: str,
        now: datetime,
        idempotency: tuple[str, str] | None = None,
    ) -> bool:
        """Record a running import; False if the caller's key belongs to another one."""
        ...

    async def keyed(self, caller: str, key: str) -> dict[str, Any] | None: ...

    async def release_key(self, import_id: uuid.UUID) -> None: ...

    async def finish(
        self,
        import_id: uuid.UUID,
        *,
        status: str,
        bytes_read: int,
        now: datetime,
        error: str | None,
    ) -> dict[str, Any]: ...


class RevocationRepository(Protocol):
    """Revoked tokens of the tenant."""

    async def insert(
        self,
        token_id: str,
        *,
        reason: str,
        revoked_at: datetime,
        revoked_by: str,
        expires_at: datetime | None,
    ) -> dict[str, Any] | None:
        """The stored revocation, or None if the token was revoked already."""
        ...

    async def get(self, token_id: str) -> dict[str, Any] | None: ...


class ChangeControlRepository(Protocol):
    """The tenant's change-control configuration and the changes the config service knows."""

    async def control(self, *, lock: bool = False) -> ChangeControl:
        """The configuration (version 0 when never saved); `lock` serialises replacements."""
        ...

    async def save_control(
        self, classes: Sequence[str], *, version: int, actor: str, now: datetime
    ) -> None: ...

    async def change(self, change_id: uuid.UUID) -> ProjectedChange | None:
        """The change as the projection of the change service's events knows it."""
        ...


# The repositories a unit of work gives while it is open (`async with`), and only then.
REPOSITORIES = (
    "cis",
    "relationships",
    "membership",
    "catalogue",
    "baselines",
    "imports",
    "revocations",
    "change_control",
)


class ConfigUnit(UnitOfWork):
    """What a config use case works with: the unit of work and the service's repositories
    (`REPOSITORIES`), which exist while it is open."""

    cis: CiRepository
    relationships: RelationshipRepository
    membership: MembershipRepository
    catalogue: CatalogueRepository
    baselines: BaselineRepository
    imports: ImportRepository
    revocations: RevocationRepository
    change_control: ChangeControlRepository


class ConfigUnitOfWork(PostgresUnitOfWork, ConfigUnit):
    """The config service's unit of work on PostgreSQL: repositories over the adapters, bound
    to the unit's transaction and tenant while it is open."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        conn, tenant = self.conn, self.tenant_id
        self.cis = repositories.PostgresCis(conn, tenant)
        self.relationships = repositories.PostgresRelationships(conn, tenant)
        self.membership = repositories.PostgresMembership(conn, tenant)
        self.catalogue = repositories.PostgresCatalogue(conn, tenant)
        self.baselines = repositories.PostgresBaselines(conn, tenant)
        self.imports = repositories.PostgresImports(conn, tenant)
        self.revocations = repositories.PostgresRevocations(conn, tenant)
        self.change_control = repositories.PostgresChangeControl(conn, tenant)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(kind, exc, tb)
        finally:
            # Bound to a connection that went back to the pool: unusable once the unit is closed.
            for name in REPOSITORIES:
                self.__dict__.pop(name, None)
