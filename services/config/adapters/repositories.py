"""The repositories of the config service's unit of work: the adapters' SQL, bound to one
transaction and one tenant (see application/uow.py for what each promises)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from services.config.adapters import (
    baselines,
    catalogue,
    change_control,
    cis,
    imports,
    membership,
    relationships,
)
from services.config.adapters import revocations as revocation_rows
from services.config.adapters.membership import Supported
from services.config.domain.catalogue import SlaPolicyDefinition
from services.config.domain.change_control import ChangeControl, ProjectedChange
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.db import Connection


class _Bound:
    def __init__(self, conn: Connection, tenant_id: str) -> None:
        self.conn = conn
        self.tenant_id = tenant_id


class PostgresCis(_Bound):
    """CIs, versions, external ids and tenant classes."""

    async def get(self, ci_id: uuid.UUID, *, for_update: bool = False) -> ConfigurationItem | None:
        return await cis.get(self.conn, self.tenant_id, ci_id, for_update=for_update)

    async def add(self, ci: ConfigurationItem) -> None:
        await cis.insert(self.conn, ci)

    async def update(self, ci: ConfigurationItem) -> None:
        await cis.update(self.conn, ci)

    async def record_version(
        self,
        ci: ConfigurationItem,
        *,
        changed: list[str],
        reason: str | None,
        change_ref: str | None,
        source: str | None,
        change_id: uuid.UUID | None = None,
    ) -> None:
        await cis.record_version(
            self.conn,
            ci,
            changed=changed,
            reason=reason,
            change_ref=change_ref,
            source=source,
            change_id=change_id,
        )

    async def claim_external_ids(self, ci: ConfigurationItem) -> list[str]:
        return await cis.claim_external_ids(self.conn, self.tenant_id, ci.id, ci.external_ids)

    async def tenant_class(self, name: str) -> dict[str, Any] | None:
        return await cis.tenant_class(self.conn, self.tenant_id, name)

    async def tenant_classes(self) -> list[dict[str, Any]]:
        return await cis.tenant_classes(self.conn, self.tenant_id)

    async def define_class(
        self,
        name: str,
        *,
        description: str,
        attribute_schema: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> int:
        return await cis.define_class(
            self.conn,
            self.tenant_id,
            name,
            description=description,
            attribute_schema=attribute_schema,
            actor=actor,
            now=now,
        )


class PostgresRelationships(_Bound):
    """Relationships and the impact walk."""

    async def add(
        self,
        *,
        type_: str,
        source_id: uuid.UUID,
        target_id: uuid.UUID,
        actor: str,
        now: datetime,
    ) -> dict[str, Any] | None:
        return await relationships.add(
            self.conn,
            self.tenant_id,
            type_=type_,
            source_id=source_id,
            target_id=target_id,
            actor=actor,
            now=now,
        )

    async def in_place(
        self, type_: str, source_id: uuid.UUID, target_id: uuid.UUID
    ) -> dict[str, Any] | None:
        return await relationships.in_place(self.conn, self.tenant_id, type_, source_id, target_id)

    async def remove(
        self, relationship_id: uuid.UUID, *, actor: str, now: datetime
    ) -> dict[str, Any] | None:
        return await relationships.remove(
            self.conn, self.tenant_id, relationship_id, actor=actor, now=now
        )

    async def walk(
        self,
        ci_id: uuid.UUID,
        *,
        direction: Literal["upward", "downward"],
        depth: int,
        max_paths: int,
    ) -> tuple[bool, str, str]:
        return await relationships.walk(
            self.conn,
            self.tenant_id,
            ci_id,
            direction=direction,
            depth=depth,
            max_paths=max_paths,
        )


class PostgresMembership(_Bound):
    """The service-membership sets."""

    async def lock_tenant(self) -> None:
        await membership.lock_tenant(self.conn, self.tenant_id)

    async def supported(self, seeds: Sequence[uuid.UUID]) -> list[Supported]:
        return await membership.supported(self.conn, self.tenant_id, seeds)

    async def record(
        self, changes: Sequence[tuple[uuid.UUID, list[str], int]], now: datetime
    ) -> None:
        await membership.record(self.conn, self.tenant_id, changes, now)


class PostgresCatalogue(_Bound):
    """Calendars, SLA policies, coverage and business service announcements."""

    async def calendar(self, name: str, *, lock: str | None = None) -> dict[str, Any] | None:
        return await catalogue.calendar(self.conn, self.tenant_id, name, lock=lock)

    async def save_calendar(
        self, name: str, *, description: str, spec: CalendarSpec, actor: str, now: datetime
    ) -> int:
        return await catalogue.save_calendar(
            self.conn,
            self.tenant_id,
            name,
            description=description,
            spec=spec,
            actor=actor,
            now=now,
        )

    async def policies_using(self, calendar: str) -> list[dict[str, Any]]:
        return await catalogue.policies_using(self.conn, self.tenant_id, calendar)

    async def policy(self, name: str, *, for_update: bool = False) -> dict[str, Any] | None:
        return await catalogue.policy(self.conn, self.tenant_id, name, for_update=for_update)

    async def save_policy(
        self,
        name: str,
        definition: SlaPolicyDefinition,
        *,
        version: int,
        actor: str,
        now: datetime,
    ) -> None:
        await catalogue.save_policy(
            self.conn, self.tenant_id, name, definition, version=version, actor=actor, now=now
        )

    async def bump_policy(self, name: str, *, actor: str, now: datetime) -> int:
        return await catalogue.bump_policy(self.conn, self.tenant_id, name, actor=actor, now=now)

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
    ) -> None:
        await catalogue.record_policy_version(
            self.conn,
            self.tenant_id,
            name,
            definition,
            version=version,
            cause=cause,
            calendar_version=calendar_version,
            calendar=calendar,
            actor=actor,
            now=now,
        )

    async def other_default(self, name: str) -> str | None:
        return await catalogue.other_default(self.conn, self.tenant_id, name)

    async def covered_elsewhere(self, name: str, services: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        return await catalogue.covered_elsewhere(self.conn, self.tenant_id, name, services)

    async def set_coverage(self, name: str, services: list[uuid.UUID]) -> None:
        await catalogue.set_coverage(self.conn, self.tenant_id, name, services)

    async def covering_policy(self, service_id: uuid.UUID) -> str | None:
        return await catalogue.covering_policy(self.conn, self.tenant_id, service_id)

    async def next_announcement(self, service_id: uuid.UUID) -> int:
        return await catalogue.next_announcement(self.conn, self.tenant_id, service_id)

    async def cis_share_locked(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, ConfigurationItem]:
        return await catalogue.cis_share_locked(self.conn, self.tenant_id, ids)


class PostgresBaselines(_Bound):
    """Baselines."""

    async def get(self, name: str) -> dict[str, Any] | None:
        return await baselines.get(self.conn, self.tenant_id, name)

    async def counts_at(self, at: datetime) -> tuple[int, int]:
        return await baselines.counts_at(self.conn, self.tenant_id, at)

    async def insert(self, baseline: dict[str, Any]) -> bool:
        return await baselines.insert(self.conn, self.tenant_id, baseline)

    async def prepare_for_history(self) -> None:
        await baselines.without_jit(self.conn)

    async def ci_changes_summary(self, earlier: datetime, later: datetime) -> dict[str, int]:
        return await baselines.ci_changes_summary(self.conn, self.tenant_id, earlier, later)

    async def relationship_changes_summary(
        self, earlier: datetime, later: datetime
    ) -> dict[str, int]:
        return await baselines.relationship_changes_summary(
            self.conn, self.tenant_id, earlier, later
        )

    async def ci_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        return await baselines.ci_changes(
            self.conn, self.tenant_id, earlier, later, after=after, limit=limit
        )

    async def relationship_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        return await baselines.relationship_changes(
            self.conn, self.tenant_id, earlier, later, after=after, limit=limit
        )


class PostgresImports(_Bound):
    """Import runs (their batches write through adapters/imports.py directly: the bulk path)."""

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
        return await imports.start(
            self.conn,
            self.tenant_id,
            import_id,
            source=source,
            format_=format_,
            actor=actor,
            now=now,
            idempotency=idempotency,
        )

    async def keyed(self, caller: str, key: str) -> dict[str, Any] | None:
        return await imports.keyed(self.conn, self.tenant_id, caller, key)

    async def release_key(self, import_id: uuid.UUID) -> None:
        await imports.release_key(self.conn, self.tenant_id, import_id)

    async def finish(
        self,
        import_id: uuid.UUID,
        *,
        status: str,
        bytes_read: int,
        now: datetime,
        error: str | None,
    ) -> dict[str, Any]:
        return await imports.finish(
            self.conn,
            self.tenant_id,
            import_id,
            status=status,
            bytes_read=bytes_read,
            now=now,
            error=error,
        )


class PostgresRevocations(_Bound):
    """Revoked tokens."""

    async def insert(
        self,
        token_id: str,
        *,
        reason: str,
        revoked_at: datetime,
        revoked_by: str,
        expires_at: datetime | None,
    ) -> dict[str, Any] | None:
        return await revocation_rows.insert(
            self.conn,
            self.tenant_id,
            token_id,
            reason=reason,
            revoked_at=revoked_at,
            revoked_by=revoked_by,
            expires_at=expires_at,
        )

    async def get(self, token_id: str) -> dict[str, Any] | None:
        return await revocation_rows.get(self.conn, self.tenant_id, token_id)


class PostgresChangeControl(_Bound):
    """The change-control configuration and the projection of changes."""

    async def control(self, *, lock: bool = False) -> ChangeControl:
        if lock:
            await change_control.lock_control(self.conn, self.tenant_id)
        return await change_control.control(self.conn, self.tenant_id)

    async def save_control(
        self, classes: Sequence[str], *, version: int, actor: str, now: datetime
    ) -> None:
        await change_control.save_control(
            self.conn, self.tenant_id, classes, version=version, actor=actor, now=now
        )

    async def change(self, change_id: uuid.UUID) -> ProjectedChange | None:
        return await change_control.projected_change(self.conn, self.tenant_id, change_id)
