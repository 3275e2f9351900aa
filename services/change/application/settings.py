"""A tenant's change settings: read (the defaults until it saves its own) and replace
(If-Match on the version, "0" the first time), announced by `itsm.change.settings_changed.v1`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from services.change.adapters.change_records import settings_json
from services.change.application.uow import ChangeUnitOfWork, ChangeWork
from services.change.domain.records import ChangeSettings
from shared.context import RequestContext
from shared.errors import StaleVersion
from shared.events.catalogue import ChangeSettingsChangedV1

SUBJECT = "change-settings"


async def replace_settings_in(
    uow: ChangeWork, settings: ChangeSettings, *, expected_version: int, now: datetime | None = None
) -> ChangeSettings:
    """Replace the tenant's settings if it read the current version; announce them."""
    await uow.change_settings.lock()
    current = await uow.change_settings.get()
    if current.version != expected_version:
        raise StaleVersion("the change settings", current.version, expected_version)
    stored = replace(settings, version=current.version + 1)
    await uow.change_settings.write(stored, at=now or datetime.now(UTC), actor=uow.context.actor)
    uow.record(
        SUBJECT,
        stored.version,
        [ChangeSettingsChangedV1(settings=settings_json(stored), version=stored.version)],
    )
    return stored


async def read_settings(pool: asyncpg.Pool, tenant_id: str) -> ChangeSettings:
    """The tenant's change settings (version 0: the defaults)."""
    async with ChangeUnitOfWork(pool, RequestContext(tenant_id, "reader", "")) as uow:
        return await uow.change_settings.get()


async def replace_settings(
    pool: asyncpg.Pool, settings: ChangeSettings, context: RequestContext, *, expected_version: int
) -> ChangeSettings:
    """Replace the tenant's change settings (If-Match)."""
    async with ChangeUnitOfWork(pool, context) as uow:
        return await replace_settings_in(uow, settings, expected_version=expected_version)
