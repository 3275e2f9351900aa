"""A tenant's incident settings: read them, replace them (If-Match), and announce the change.

One row per tenant in `incident_settings`; a tenant without one runs on the defaults
(`TenantSettings()`), shown as version 0. A replacement is whole (PUT): fields left out return
to their defaults, so what was sent is what is in force. Each replacement is an event carrying
the settings in full (`itsm.incident.settings_changed.v1`), the audit trail of who configured
priorities, auto-closure, alert mapping, trends, change correlation and surveys, and when.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import Field

from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import IncidentWork, TenantSettings
from services.incident.domain.alerts import AlertMapping
from services.incident.domain.priority import PriorityMatrix
from shared.context import RequestContext
from shared.errors import StaleVersion
from shared.events.catalogue import IncidentSettingsChangedV1
from shared.models import RequestBody

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
    surveys_enabled: bool = Field(
        default=True,
        description="Offer a satisfaction survey when an incident is resolved or a request "
        "fulfilled (one per record).",
    )
    survey_days: int = Field(
        default=14, ge=1, le=90, description="A survey takes its answer for this many days."
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
        "surveys_enabled": settings.surveys_enabled,
        "survey_days": settings.survey_days,
        "version": settings.version,
    }


async def read_settings(pool: asyncpg.Pool, tenant_id: str) -> TenantSettings:
    """The tenant's settings (the defaults, version 0, when it never saved any)."""
    async with unit_of_work(pool, RequestContext(tenant_id, "reader", "")) as uow:
        return await uow.settings.get()


async def replace_settings_in(
    uow: IncidentWork,
    body: IncidentSettingsBody,
    *,
    expected_version: int,
    now: datetime | None = None,
) -> TenantSettings:
    """Replace the tenant's settings if it read the current version (`StaleVersion`
    otherwise); announce them."""
    await uow.settings.lock()
    current = await uow.settings.get()
    if current.version != expected_version:
        raise StaleVersion("the incident settings", current.version, expected_version)
    version = current.version + 1
    await uow.settings.write(
        TenantSettings(
            matrix=body.priority_matrix,
            auto_close_days=body.auto_close_days,
            alert_mapping=body.alert_mapping,
            trend_threshold=body.trend_threshold,
            trend_window_seconds=body.trend_window_seconds,
            trend_opens_problem=body.trend_opens_problem,
            change_window_seconds=body.change_window_seconds,
            surveys_enabled=body.surveys_enabled,
            survey_days=body.survey_days,
            version=version,
        ),
        at=now or datetime.now(UTC),
        actor=uow.context.actor,
    )
    stored = await uow.settings.get()
    view = settings_view(stored)
    view.pop("version")
    uow.record("settings", version, [IncidentSettingsChangedV1(settings=view, version=version)])
    return stored


async def replace_settings(
    pool: asyncpg.Pool,
    body: IncidentSettingsBody,
    context: RequestContext,
    *,
    expected_version: int,
) -> TenantSettings:
    """Replace the tenant's settings if it read the current version; announce them."""
    async with unit_of_work(pool, context) as uow:
        return await replace_settings_in(uow, body, expected_version=expected_version)
