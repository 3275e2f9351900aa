"""A tenant's incident settings: read them, replace them (If-Match), and announce the change.

One row per tenant in `incident_settings`; a tenant without one runs on the defaults
(`TenantSettings()`), shown as version 0. A replacement is whole (PUT): fields left out return
to their defaults, so what was sent is what is in force. Each replacement is an event carrying
the settings in full (`itsm.incident.settings_changed.v1`), the audit trail of who configured
priorities, auto-closure, alert mapping, trends and change correlation, and when.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import Field

from services.incident.application.handlers import TenantSettings, tenant_settings
from services.incident.domain.alerts import AlertMapping
from services.incident.domain.priority import PriorityMatrix
from shared import outbox
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import IncidentSettingsChangedV1
from shared.http.etags import stale_version
from shared.http.models import RequestBody

DAY = 86_400


class IncidentSettingsBody(RequestBody):
    """The tenant's incident settings (a field left out takes its default)."""

    priority_matrix: PriorityMatrix = Field(
        default_factory=PriorityMatrix.default,
        description="Impact × urgency → priority; default: the ITIL 3×3 matrix (P1..P5).",
    )
    auto_close_days: int = Field(
        default=7, ge=1, le=365, description="Resolved incidents close after this many days."
    )
    alert_mapping: AlertMapping = Field(
        default_factory=AlertMapping,
        description="How monitoring alerts become incidents: severity → impact and urgency, "
        "the labels naming CI and service, auto-resolve.",
    )
    trend_threshold: int = Field(
        default=3,
        ge=2,
        le=1000,
        description="This many incidents on one CI or service within the window suggest a problem.",
    )
    trend_window_seconds: int = Field(default=DAY, ge=60, le=90 * DAY)
    trend_opens_problem: bool = Field(
        default=False, description="Open the problem at once instead of suggesting it."
    )
    change_window_seconds: int = Field(
        default=DAY,
        ge=60,
        le=30 * DAY,
        description="An incident on a CI changed this long before it flags the change.",
    )


def settings_view(settings: TenantSettings) -> dict[str, Any]:
    """The settings as the API shows them (JSON-ready), with their version."""
    return {
        "priority_matrix": settings.matrix.model_dump(mode="json"),
        "auto_close_days": settings.auto_close_days,
        "alert_mapping": settings.alert_mapping.model_dump(mode="json"),
        "trend_threshold": settings.trend_threshold,
        "trend_window_seconds": settings.trend_window_seconds,
        "trend_opens_problem": settings.trend_opens_problem,
        "change_window_seconds": settings.change_window_seconds,
        "version": settings.version,
    }


async def read_settings(pool: asyncpg.Pool, tenant_id: str) -> TenantSettings:
    """The tenant's settings (the defaults, version 0, when it never saved any)."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        return await tenant_settings(conn, tenant_id)


async def replace_settings(
    pool: asyncpg.Pool,
    body: IncidentSettingsBody,
    context: RequestContext,
    *,
    expected_version: int,
) -> TenantSettings:
    """Replace the tenant's settings if it read the current version; announce them."""
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        # Serialise writers of a tenant that has no row yet (version 0) as well.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('incident_settings:' || $1, 0))",
            tenant,
        )
        current = await tenant_settings(conn, tenant)
        if current.version != expected_version:
            raise stale_version("the incident settings", current.version, expected_version)
        version = current.version + 1
        await conn.execute(
            "INSERT INTO incident_settings (tenant_id, priority_matrix, auto_close_days,"
            " alert_mapping, trend_threshold, trend_window_seconds, trend_opens_problem,"
            " change_window_seconds, version, updated_at, updated_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (tenant_id) DO UPDATE SET priority_matrix = EXCLUDED.priority_matrix,"
            " auto_close_days = EXCLUDED.auto_close_days,"
            " alert_mapping = EXCLUDED.alert_mapping,"
            " trend_threshold = EXCLUDED.trend_threshold,"
            " trend_window_seconds = EXCLUDED.trend_window_seconds,"
            " trend_opens_problem = EXCLUDED.trend_opens_problem,"
            " change_window_seconds = EXCLUDED.change_window_seconds,"
            " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,"
            " updated_by = EXCLUDED.updated_by",
            tenant,
            body.priority_matrix.model_dump(mode="json"),
            body.auto_close_days,
            body.alert_mapping.model_dump(mode="json"),
            body.trend_threshold,
            body.trend_window_seconds,
            body.trend_opens_problem,
            body.change_window_seconds,
            version,
            datetime.now(UTC),
            context.actor,
        )
        stored = await tenant_settings(conn, tenant)
        view = settings_view(stored)
        view.pop("version")
        await outbox.append_many(
            conn,
            [
                outbox.Pending(
                    IncidentSettingsChangedV1(settings=view, version=version), "settings", version
                )
            ],
            tenant_id=tenant,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
    return stored
