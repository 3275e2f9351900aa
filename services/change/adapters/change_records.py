"""The change records' stores in PostgreSQL (rfc): settings, templates, backouts, reviews, and
the projections' reads, on the unit of work's connection and tenant
(`application/ports.py` says what each does)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.change.adapters import incidents
from services.change.adapters.incidents import SuspectedIncident
from services.change.application.ports import Backout, Review
from services.change.domain.records import ChangeSettings, Template
from shared.cmdb import reads
from shared.cmdb.reads import ProjectedCi
from shared.uow import TransactionStore

if TYPE_CHECKING:
    pass

_SETTINGS = [f.name for f in fields(ChangeSettings) if f.name != "version"]
_TEMPLATE = [f.name for f in fields(Template)]
_TEMPLATE_ARRAYS = ("ci_ids", "ci_classes")


def settings_of(stored: dict[str, Any], version: int) -> ChangeSettings:
    """Settings from their stored JSON (a field it lacks keeps its default)."""
    values: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in _SETTINGS
    }
    return ChangeSettings(**values, version=version)


def settings_json(settings: ChangeSettings) -> dict[str, Any]:
    """Settings as stored and shown (no version)."""
    view = asdict(settings)
    view.pop("version")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in view.items()}


class PgChangeSettings(TransactionStore):
    async def get(self) -> ChangeSettings:
        row = await self._conn.fetchrow(
            "SELECT settings, version FROM change_settings WHERE tenant_id = $1", self._tenant
        )
        return ChangeSettings() if row is None else settings_of(row["settings"], row["version"])

    async def lock(self) -> None:
        # The first write of a tenant has no row to lock: serialize on the tenant instead.
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('change_settings:' || $1, 0))",
            self._tenant,
        )

    async def write(self, settings: ChangeSettings, *, at: datetime, actor: str) -> None:
        await self._conn.execute(
            "INSERT INTO change_settings (tenant_id, settings, version, updated_at, updated_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET"
            " settings = EXCLUDED.settings, version = EXCLUDED.version,"
            " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
            self._tenant,
            settings_json(settings),
            settings.version,
            at,
            actor,
        )


def _template(row: Any) -> Template:
    values = {name: row[name] for name in _TEMPLATE}
    for name in _TEMPLATE_ARRAYS:
        values[name] = tuple(values[name] or ())
    return Template(**values)


class PgTemplates(TransactionStore):
    _select = f"SELECT {', '.join(_TEMPLATE)} FROM change_templates"  # noqa: S608 (fixed names)

    async def get(self, template_id: uuid.UUID, *, lock: bool = False) -> Template | None:
        row = await self._conn.fetchrow(
            self._select + " WHERE tenant_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
            self._tenant,
            template_id,
        )
        return _template(row) if row else None

    def _row(self, template: Template) -> list[Any]:
        values = asdict(template)
        for name in _TEMPLATE_ARRAYS:
            values[name] = list(values[name])
        return [values[name] for name in _TEMPLATE]

    async def insert(self, template: Template) -> None:
        names = ", ".join(["tenant_id", *_TEMPLATE])
        places = ", ".join(f"${i}" for i in range(1, len(_TEMPLATE) + 2))
        await self._conn.execute(
            f"INSERT INTO change_templates ({names}) VALUES ({places})",  # noqa: S608
            self._tenant,
            *self._row(template),
        )

    async def save(self, template: Template) -> None:
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(_TEMPLATE, 2))
        await self._conn.execute(
            f"UPDATE change_templates SET {sets} WHERE tenant_id = $1 AND id = $2",  # noqa: S608
            self._tenant,
            *self._row(template),
        )

    async def all(self, *, active: bool | None) -> list[Template]:
        rows = await self._conn.fetch(
            self._select + " WHERE tenant_id = $1 AND ($2::boolean IS NULL OR active = $2)"
            " ORDER BY lower(name), id",
            self._tenant,
            active,
        )
        return [_template(r) for r in rows]


class PgEvidence(TransactionStore):
    async def failed_deployments(self, change_id: uuid.UUID) -> list[str]:
        """The change's deployments that failed and were not deployed again since, as
        `pipeline/environment#sequence` (the deployment gate's records)."""
        rows = await self._conn.fetch(
            "SELECT pipeline, environment, sequence FROM ("
            " SELECT DISTINCT ON (pipeline, environment) pipeline, environment, sequence, status"
            " FROM deployments WHERE tenant_id = $1 AND change_id = $2"
            " AND status <> 'announced'"
            " ORDER BY pipeline, environment, sequence DESC, created_at DESC) latest"
            " WHERE status = 'failed' ORDER BY pipeline, environment",
            self._tenant,
            change_id,
        )
        return [f"{r['pipeline']}/{r['environment']}#{r['sequence']}" for r in rows]

    async def backout(self, change_id: uuid.UUID) -> Backout | None:
        row = await self._conn.fetchrow(
            "SELECT change_id, reason, executed_by, executed_at FROM change_backouts"
            " WHERE tenant_id = $1 AND change_id = $2",
            self._tenant,
            change_id,
        )
        return Backout(**dict(row)) if row else None

    async def add_backout(self, backout: Backout) -> None:
        await self._conn.execute(
            "INSERT INTO change_backouts (tenant_id, change_id, reason, executed_by, executed_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            self._tenant,
            backout.change_id,
            backout.reason,
            backout.executed_by,
            backout.executed_at,
        )

    async def review(self, change_id: uuid.UUID) -> Review | None:
        row = await self._conn.fetchrow(
            "SELECT change_id, what_happened, lessons, actions, reviewer, reviewed_at"
            " FROM change_reviews WHERE tenant_id = $1 AND change_id = $2",
            self._tenant,
            change_id,
        )
        if row is None:
            return None
        return Review(**{**dict(row), "actions": tuple(row["actions"])})

    async def add_review(self, review: Review) -> None:
        await self._conn.execute(
            "INSERT INTO change_reviews (tenant_id, change_id, what_happened, lessons, actions,"
            " reviewer, reviewed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self._tenant,
            review.change_id,
            review.what_happened,
            review.lessons,
            list(review.actions),
            review.reviewer,
            review.reviewed_at,
        )

    async def suspected(self, change_id: uuid.UUID) -> list[SuspectedIncident]:
        return await incidents.suspected_incidents(self._conn, self._tenant, str(change_id))


class PgProjection(TransactionStore):
    async def ci(self, ci_id: uuid.UUID) -> ProjectedCi | None:
        return await reads.ci_by_id(self._conn, self._tenant, str(ci_id))

    async def services_of_ci(self, ci_id: uuid.UUID) -> list[str]:
        return await reads.services_of_ci(self._conn, self._tenant, str(ci_id))

    async def unknown_incidents(self, incident_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return await incidents.unknown_incidents(self._conn, self._tenant, incident_ids)
