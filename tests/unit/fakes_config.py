"""An in-memory config service for unit tests: the repositories of `application/uow.py` over
plain dicts, and a unit of work that keeps what it recorded and rolls the dicts back on error.

Several units of work share one `ConfigStore`, so a test can run use cases one after another
(register two CIs, then relate them) and look at the state and the events they left.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from services.config.adapters.membership import Supported
from services.config.application.membership import DEPENDENT_ON_TARGET
from services.config.application.uow import REPOSITORIES, ConfigUnit
from services.config.domain.catalogue import BUSINESS_SERVICE, SlaPolicyDefinition
from services.config.domain.change_control import ChangeControl, ProjectedChange
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.ids import new_id
from shared.uow import Recorded

TENANT = "tenant-a"
CONTEXT = RequestContext(TENANT, "alice", "corr-1")


@dataclass
class ConfigStore:
    """Everything the fake repositories keep, and the events committed units wrote."""

    cis: dict[uuid.UUID, ConfigurationItem] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    external_ids: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    relationships: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    membership: dict[uuid.UUID, tuple[list[str], int]] = field(default_factory=dict)
    calendars: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy_versions: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[uuid.UUID, str] = field(default_factory=dict)
    announcements: dict[uuid.UUID, int] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the history queries of a diff answer (their SQL is tested in the integration tier).
    ci_changes: list[dict[str, Any]] = field(default_factory=list)
    relationship_changes: list[dict[str, Any]] = field(default_factory=list)
    imports: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    revocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    control: ChangeControl = field(default_factory=ChangeControl)
    # The config service's projection of changes, by id.
    changes: dict[uuid.UUID, ProjectedChange] = field(default_factory=dict)
    # What committed units wrote to the outbox, in order; and how many units rolled back.
    events: list[Recorded] = field(default_factory=list)
    rollbacks: int = 0

    def of_type(self, kind: type) -> list[Any]:
        """The payloads of one event class, in the order they were written."""
        return [e.payload for e in self.events if isinstance(e.payload, kind)]


class _Repository:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store


class FakeCis(_Repository):
    async def get(self, ci_id: uuid.UUID, *, for_update: bool = False) -> ConfigurationItem | None:
        return self.store.cis.get(ci_id)

    async def add(self, ci: ConfigurationItem) -> None:
        assert ci.id not in self.store.cis
        self.store.cis[ci.id] = ci

    async def update(self, ci: ConfigurationItem) -> None:
        assert ci.id in self.store.cis
        self.store.cis[ci.id] = ci

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
        self.store.versions.append(
            {
                "ci_id": ci.id,
                "version": ci.version,
                "changed": changed,
                "reason": reason,
                "change_ref": change_ref,
                "change_id": change_id,
                "source": source,
                "state": ci.state().model_dump(mode="json"),
            }
        )

    async def claim_external_ids(self, ci: ConfigurationItem) -> list[str]:
        held = self.store.external_ids
        for key in [k for k, owner in held.items() if owner == ci.id]:
            del held[key]
        taken = []
        for source, external in sorted(ci.external_ids.items()):
            if held.setdefault((source, external), ci.id) != ci.id:
                taken.append(source)
        return taken

    async def tenant_class(self, name: str) -> dict[str, Any] | None:
        return self.store.classes.get(name)

    async def tenant_classes(self) -> list[dict[str, Any]]:
        return [self.store.classes[n] for n in sorted(self.store.classes)]

    async def define_class(
        self,
        name: str,
        *,
        description: str,
        attribute_schema: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> int:
        version = self.store.classes[name]["version"] + 1 if name in self.store.classes else 1
        self.store.classes[name] = {
            "name": name,
            "description": description,
            "attribute_schema": attribute_schema,
            "version": version,
        }
        return version


class FakeRelationships(_Repository):
    walked: list[tuple[uuid.UUID, str, int]]

    def __init__(self, store: ConfigStore) -> None:
        super().__init__(store)
        self.walked = []

    async def add(
        self,
        *,
        type_: str,
        source_id: uuid.UUID,
        target_id: uuid.UUID,
        actor: str,
        now: datetime,
    ) -> dict[str, Any] | None:
        if await self.in_place(type_, source_id, target_id) is not None:
            return None
        row = {
            "id": new_id(),
            "type": type_,
            "source_id": source_id,
            "target_id": target_id,
            "added_at": now,
            "added_by": actor,
            "removed_at": None,
            "removed_by": None,
        }
        self.store.relationships[row["id"]] = row
        return dict(row)

    async def in_place(
        self, type_: str, source_id: uuid.UUID, target_id: uuid.UUID
    ) -> dict[str, Any] | None:
        for row in self.store.relationships.values():
            same = (row["type"], row["source_id"], row["target_id"]) == (
                type_,
                source_id,
                target_id,
            )
            if same and row["removed_at"] is None:
                return dict(row)
        return None

    async def remove(
        self, relationship_id: uuid.UUID, *, actor: str, now: datetime
    ) -> dict[str, Any] | None:
        row = self.store.relationships.get(relationship_id)
        if row is None or row["removed_at"] is not None:
            return None
        row.update(removed_at=now, removed_by=actor)
        return dict(row)

    async def walk(
        self,
        ci_id: uuid.UUID,
        *,
        direction: Literal["upward", "downward"],
        depth: int,
        max_paths: int,
    ) -> tuple[bool, str, str]:
        # The walk itself is SQL (tested in the integration tier); here, what was asked.
        self.walked.append((ci_id, direction, depth))
        return False, f'[{{"id": "{ci_id}"}}]', "[]"


def _edges(store: ConfigStore) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(dependent, dependency) of every relationship in place (see migrations/0003)."""
    edges = []
    for row in store.relationships.values():
        if row["removed_at"] is not None:
            continue
        source, target = row["source_id"], row["target_id"]
        edges.append((source, target) if row["type"] in DEPENDENT_ON_TARGET else (target, source))
    return edges


class FakeMembership(_Repository):
    locked = False

    async def lock_tenant(self) -> None:
        self.locked = True

    async def supported(self, seeds: Sequence[uuid.UUID]) -> list[Supported]:
        """The same fact as the SQL walk, computed over the dicts."""
        edges = _edges(self.store)
        live = {i for i, ci in self.store.cis.items() if ci.status != "retired"}
        affected, todo = set(seeds), list(seeds)
        while todo:
            ci = todo.pop()
            for dependent, dependency in edges:
                if dependent == ci and dependency not in affected:
                    affected.add(dependency)
                    todo.append(dependency)
        rows: list[Supported] = []
        for origin in sorted(affected):
            services: set[uuid.UUID] = set()
            if origin in live:
                up, todo = {origin}, [origin]
                while todo:
                    ci = todo.pop()
                    for dependent, dependency in edges:
                        if dependency == ci and dependent in live and dependent not in up:
                            up.add(dependent)
                            todo.append(dependent)
                services = {c for c in up if self.store.cis[c].ci_class == BUSINESS_SERVICE}
            previous, sequence = self.store.membership.get(origin, ([], 0))
            rows.append((origin, [str(s) for s in sorted(services)], previous, sequence))
        return rows

    async def record(
        self, changes: Sequence[tuple[uuid.UUID, list[str], int]], now: datetime
    ) -> None:
        for ci, services, sequence in changes:
            self.store.membership[ci] = (services, sequence)


class FakeCatalogue(_Repository):
    async def calendar(self, name: str, *, lock: str | None = None) -> dict[str, Any] | None:
        row = self.store.calendars.get(name)
        return dict(row) if row else None

    async def save_calendar(
        self, name: str, *, description: str, spec: CalendarSpec, actor: str, now: datetime
    ) -> int:
        version = self.store.calendars[name]["version"] + 1 if name in self.store.calendars else 1
        self.store.calendars[name] = {
            "name": name,
            "description": description,
            "spec": spec,
            "version": version,
            "updated_at": now,
            "updated_by": actor,
        }
        return version

    async def policies_using(self, calendar: str) -> list[dict[str, Any]]:
        return [
            dict(p)
            for _, p in sorted(self.store.policies.items())
            if p["definition"].calendar == calendar
        ]

    async def policy(self, name: str, *, for_update: bool = False) -> dict[str, Any] | None:
        row = self.store.policies.get(name)
        return dict(row) if row else None

    async def save_policy(
        self,
        name: str,
        definition: SlaPolicyDefinition,
        *,
        version: int,
        actor: str,
        now: datetime,
    ) -> None:
        self.store.policies[name] = {
            "name": name,
            "definition": definition,
            "version": version,
            "updated_at": now,
            "updated_by": actor,
        }

    async def bump_policy(self, name: str, *, actor: str, now: datetime) -> int:
        row = self.store.policies[name]
        row.update(version=row["version"] + 1, updated_at=now, updated_by=actor)
        version: int = row["version"]
        return version

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
        self.store.policy_versions.append(
            {"name": name, "version": version, "cause": cause, "calendar_version": calendar_version}
        )

    async def other_default(self, name: str) -> str | None:
        for other, row in sorted(self.store.policies.items()):
            if other != name and row["definition"].default:
                return other
        return None

    async def covered_elsewhere(self, name: str, services: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        coverage = self.store.coverage
        return {s: coverage[s] for s in services if s in coverage and coverage[s] != name}

    async def set_coverage(self, name: str, services: list[uuid.UUID]) -> None:
        coverage = self.store.coverage
        for service in [s for s, policy in coverage.items() if policy == name]:
            del coverage[service]
        for service in services:
            coverage[service] = name

    async def covering_policy(self, service_id: uuid.UUID) -> str | None:
        return self.store.coverage.get(service_id)

    async def next_announcement(self, service_id: uuid.UUID) -> int:
        sequence = self.store.announcements.get(service_id, 0) + 1
        self.store.announcements[service_id] = sequence
        return sequence

    async def cis_share_locked(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, ConfigurationItem]:
        return {i: self.store.cis[i] for i in ids if i in self.store.cis}


class FakeBaselines(_Repository):
    prepared = False

    async def get(self, name: str) -> dict[str, Any] | None:
        row = self.store.baselines.get(name)
        return dict(row) if row else None

    async def counts_at(self, at: datetime) -> tuple[int, int]:
        # What is in place now: the instants themselves are the SQL's (integration tier).
        cis = sum(1 for ci in self.store.cis.values() if ci.status != "retired")
        return cis, len(_edges(self.store))

    async def insert(self, baseline: dict[str, Any]) -> bool:
        if baseline["name"] in self.store.baselines:
            return False
        self.store.baselines[baseline["name"]] = dict(baseline)
        return True

    async def prepare_for_history(self) -> None:
        self.prepared = True

    async def ci_changes_summary(self, earlier: datetime, later: datetime) -> dict[str, int]:
        return dict(Counter(row["change"] for row in self.store.ci_changes))

    async def relationship_changes_summary(
        self, earlier: datetime, later: datetime
    ) -> dict[str, int]:
        return dict(Counter(row["change"] for row in self.store.relationship_changes))

    async def ci_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        return _page(self.store.ci_changes, after, limit)

    async def relationship_changes(
        self, earlier: datetime, later: datetime, *, after: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        return _page(self.store.relationship_changes, after, limit)


def _page(rows: list[dict[str, Any]], after: uuid.UUID | None, limit: int) -> list[dict[str, Any]]:
    ordered = sorted(rows, key=lambda r: r["id"])
    return [dict(r) for r in ordered if after is None or r["id"] > after][:limit]


class FakeImports(_Repository):
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
        if idempotency is not None and await self.keyed(*idempotency) is not None:
            return False
        caller, key = idempotency or (None, None)
        self.store.imports[import_id] = {
            "id": import_id,
            "source": source,
            "format": format_,
            "status": "running",
            "rows": 0,
            **dict.fromkeys(("created", "updated", "unchanged", "drift", "rejected"), 0),
            "bytes_read": 0,
            "started_at": now,
            "started_by": actor,
            "finished_at": None,
            "error": None,
            "idempotency_caller": caller,
            "idempotency_key": key,
        }
        return True

    async def keyed(self, caller: str, key: str) -> dict[str, Any] | None:
        for row in self.store.imports.values():
            if (row["idempotency_caller"], row["idempotency_key"]) == (caller, key):
                return dict(row)
        return None

    async def release_key(self, import_id: uuid.UUID) -> None:
        self.store.imports[import_id].update(idempotency_caller=None, idempotency_key=None)

    async def finish(
        self,
        import_id: uuid.UUID,
        *,
        status: str,
        bytes_read: int,
        now: datetime,
        error: str | None,
    ) -> dict[str, Any]:
        row = self.store.imports[import_id]
        row.update(status=status, bytes_read=bytes_read, finished_at=now, error=error)
        if status == "failed":
            row.update(idempotency_caller=None, idempotency_key=None)
        return dict(row)


class FakeRevocations(_Repository):
    async def insert(
        self,
        token_id: str,
        *,
        reason: str,
        revoked_at: datetime,
        revoked_by: str,
        expires_at: datetime | None,
    ) -> dict[str, Any] | None:
        if token_id in self.store.revocations:
            return None
        record = {
            "token_id": token_id,
            "reason": reason,
            "revoked_at": revoked_at,
            "revoked_by": revoked_by,
            "expires_at": expires_at,
        }
        self.store.revocations[token_id] = record
        return dict(record)

    async def get(self, token_id: str) -> dict[str, Any] | None:
        record = self.store.revocations.get(token_id)
        return dict(record) if record else None


class FakeChangeControl(_Repository):
    async def control(self, *, lock: bool = False) -> ChangeControl:
        return self.store.control

    async def save_control(
        self, classes: Sequence[str], *, version: int, actor: str, now: datetime
    ) -> None:
        self.store.control = ChangeControl(frozenset(classes), version)

    async def change(self, change_id: uuid.UUID) -> ProjectedChange | None:
        return self.store.changes.get(change_id)


@dataclass(frozen=True)
class Repositories:
    """The fake repositories of one unit of work."""

    cis: FakeCis
    relationships: FakeRelationships
    membership: FakeMembership
    catalogue: FakeCatalogue
    baselines: FakeBaselines
    imports: FakeImports
    revocations: FakeRevocations
    change_control: FakeChangeControl


class FakeConfigUnit(ConfigUnit):
    """A unit of work over a ConfigStore: a rollback restores the store as it was at the start."""

    def __init__(self, store: ConfigStore, context: RequestContext = CONTEXT) -> None:
        super().__init__(context)
        self.store = store
        # Every repository it gave, for assertions after the unit closed (`work.used.walked`).
        self.used = Repositories(
            FakeCis(store),
            FakeRelationships(store),
            FakeMembership(store),
            FakeCatalogue(store),
            FakeBaselines(store),
            FakeImports(store),
            FakeRevocations(store),
            FakeChangeControl(store),
        )
        self._before: dict[str, Any] | None = None
        self.committed = False

    async def __aenter__(self) -> FakeConfigUnit:
        fields = {k: v for k, v in vars(self.store).items() if k not in ("events", "rollbacks")}
        self._before = copy.deepcopy(fields)
        # As on PostgreSQL, the repositories exist only while the unit is open.
        for name in REPOSITORIES:
            setattr(self, name, getattr(self.used, name))
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
            for name in REPOSITORIES:
                self.__dict__.pop(name, None)

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        self.store.events.extend(events)

    async def _commit(self) -> None:
        self.committed = True

    async def _rollback(self) -> None:
        assert self._before is not None
        for name, value in self._before.items():
            setattr(self.store, name, value)
        self.store.rollbacks += 1


def unit(store: ConfigStore, actor: str = "alice") -> FakeConfigUnit:
    """A fresh unit of work over the store, for one use case (`actor` acting)."""
    return FakeConfigUnit(store, replace(CONTEXT, actor=actor))


def a_ci(
    store: ConfigStore,
    ci_class: str = "server",
    *,
    name: str = "host-1",
    status: str = "active",
    attributes: dict[str, Any] | None = None,
    controlled: bool = False,
) -> ConfigurationItem:
    """A CI put straight into the store (arrange, not act)."""
    now = datetime.now(UTC)
    ci = ConfigurationItem(
        id=new_id(),
        tenant_id=TENANT,
        ci_class=ci_class,
        name=name,
        status=status,
        owner_team=None,
        criticality=3,
        attributes=attributes or {},
        external_ids={},
        controlled=controlled,
        version=1,
        created_at=now,
        updated_at=now,
        updated_by="setup",
    )
    store.cis[ci.id] = ci
    return ci
