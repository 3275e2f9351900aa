"""A tenant's incident settings in `incident_settings`: one row per tenant, or the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.incident.domain.alerts import AlertMapping
from services.incident.domain.priority import PriorityMatrix
from shared.db import Connection


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's incident settings (defaults when it never set any)."""

    matrix: PriorityMatrix = field(default_factory=PriorityMatrix.default)
    auto_close_days: int = 7
    alert_mapping: AlertMapping = field(default_factory=AlertMapping)
    trend_threshold: int = 3
    trend_window_seconds: int = 86_400
    trend_opens_problem: bool = False
    change_window_seconds: int = 86_400
    surveys_enabled: bool = True
    survey_days: int = 14
    version: int = 0


DEFAULT_SETTINGS = TenantSettings()
# Parsed settings by (tenant, version, time of the write): every write bumps the version and
# stamps its time, so an entry never goes stale, not even one read inside a write that was then
# rolled back. It saves validating the matrix and mapping again on every request.
_PARSED: dict[tuple[str, int, datetime], TenantSettings] = {}
_PARSED_LIMIT = 1024


async def read(conn: Connection, tenant_id: str) -> TenantSettings:
    """The tenant's settings, or the defaults (read in the caller's transaction)."""
    row = await conn.fetchrow(
        "SELECT priority_matrix, auto_close_days, alert_mapping, trend_threshold,"
        " trend_window_seconds, trend_opens_problem, change_window_seconds, surveys_enabled,"
        " survey_days, version, updated_at"
        " FROM incident_settings WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return DEFAULT_SETTINGS
    key = (tenant_id, row["version"], row["updated_at"])
    parsed = _PARSED.get(key)
    if parsed is None:
        values = dict(row)
        del values["updated_at"]
        matrix = values.pop("priority_matrix")
        mapping = values.pop("alert_mapping")
        parsed = TenantSettings(
            matrix=PriorityMatrix.model_validate(matrix) if matrix else DEFAULT_SETTINGS.matrix,
            alert_mapping=(
                AlertMapping.model_validate(mapping) if mapping else DEFAULT_SETTINGS.alert_mapping
            ),
            **values,
        )
        if len(_PARSED) >= _PARSED_LIMIT:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[key] = parsed
    return parsed


async def lock(conn: Connection, tenant_id: str) -> None:
    """Serialise the writers of a tenant's settings, also while it has no row (version 0)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('incident_settings:' || $1, 0))",
        tenant_id,
    )


async def write(
    conn: Connection,
    tenant_id: str,
    settings: TenantSettings,
    *,
    at: datetime,
    actor: str,
) -> None:
    """Store the tenant's settings whole, at `settings.version`."""
    values: list[Any] = [
        tenant_id,
        settings.matrix.model_dump(mode="json"),
        settings.auto_close_days,
        settings.alert_mapping.model_dump(mode="json"),
        settings.trend_threshold,
        settings.trend_window_seconds,
        settings.trend_opens_problem,
        settings.change_window_seconds,
        settings.version,
        at,
        actor,
        settings.surveys_enabled,
        settings.survey_days,
    ]
    await conn.execute(
        "INSERT INTO incident_settings (tenant_id, priority_matrix, auto_close_days,"
        " alert_mapping, trend_threshold, trend_window_seconds, trend_opens_problem,"
        " change_window_seconds, version, updated_at, updated_by, surveys_enabled, survey_days)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (tenant_id) DO UPDATE SET priority_matrix = EXCLUDED.priority_matrix,"
        " auto_close_days = EXCLUDED.auto_close_days,"
        " alert_mapping = EXCLUDED.alert_mapping,"
        " trend_threshold = EXCLUDED.trend_threshold,"
        " trend_window_seconds = EXCLUDED.trend_window_seconds,"
        " trend_opens_problem = EXCLUDED.trend_opens_problem,"
        " change_window_seconds = EXCLUDED.change_window_seconds,"
        " surveys_enabled = EXCLUDED.surveys_enabled, survey_days = EXCLUDED.survey_days,"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,"
        " updated_by = EXCLUDED.updated_by",
        *values,
    )
