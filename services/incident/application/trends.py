"""The trend detector: a reaction to a new incident that suggests (or opens) a problem when
incidents on one CI or business service pile up (ISO/IEC 20000-1 8.6.3).

For the incident's CI, then each of its services: when the incidents on it created within the
tenant's window before this one (this one included; cancelled ones and ones explained by an
open problem or its known error left out) reach the threshold, and the key has no standing
suggestion (one younger than the window, or whose problem is still open), suggest a problem
(`ProblemSuggestedV1`, subject `trend/<ci|service>/<id>`) — or, with `trend_opens_problem`,
open one (origin trend) linking those incidents and name it in the suggestion. A service's
count leaves out incidents on a CI whose own trend stands: one trend, suggested once, on the CI.

Exactly once per trend: concurrent incidents on a key queue on an advisory lock (so each counts
what the others committed), and the `problem_trends` row admits one suggestion. Cheap: one
primary-key read of the keys' trends; only keys without a standing suggestion are locked, read
again and counted (incidents_ci index for a CI, the services index for a service, LIMITed), so
an alert storm on a key already suggested costs that one read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.incident.adapters.problems import CLOSED, TrendState
from services.incident.adapters.settings import TenantSettings
from services.incident.application.links import link_incidents
from services.incident.application.uow import IncidentWork, store_new_problem
from services.incident.domain import problem as domain
from services.incident.domain.incident import Incident
from services.incident.domain.problem import Problem
from shared.events.catalogue import ProblemSuggestedV1
from shared.events.envelope import MAX_SUBJECT
from shared.ids import new_id

# How many incidents a trend suggestion lists (and links, when it opens a problem): the newest.
TREND_SAMPLE = 100


def _stands(last: TrendState | None, window_start: datetime) -> bool:
    """Whether a key's last suggestion still stands: younger than the window, or its problem
    still open."""
    return last is not None and (
        last.suggested_at > window_start or last.problem_state not in (None, *CLOSED)
    )


def trend_keys(incident: Incident) -> list[tuple[str, str]]:
    """The (basis, key) pairs an incident counts towards: its CI, then each of its services.

    A key too long for an event subject (`trend/<basis>/<key>`) is not tracked.
    """
    keys = [("ci", str(incident.ci_id))] if incident.ci_id is not None else []
    keys += [("service", s) for s in incident.services]
    return [(b, k) for b, k in keys if len(f"trend/{b}/{k}") <= MAX_SUBJECT]


async def after_incident_logged(
    uow: IncidentWork, incident: Incident, settings: TenantSettings
) -> Incident:
    """Run the detector for `incident`, stored in this unit of work (module docstring).

    Returns the incident as now stored: a new version linked to the opened problem when the
    trend opened one, else `incident` itself.
    """
    now = incident.created_at
    window_start = now - timedelta(seconds=settings.trend_window_seconds)

    async def quiet(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The keys without a standing suggestion."""
        states = await uow.trends.states(keys) if keys else {}
        return [k for k in keys if not _stands(states.get(k), window_start)]

    keys = await quiet(trend_keys(incident))
    if not keys:
        return incident
    await uow.trends.lock(keys)
    # Read again under the lock: a transaction that held it may have suggested meanwhile.
    keys = await quiet(keys)
    sample = max(settings.trend_threshold, TREND_SAMPLE)
    current = incident
    for basis, key in keys:
        if basis == "ci":
            trend = await uow.trends.recent_on_ci(uuid.UUID(key), since=window_start, limit=sample)
        else:
            trend = await uow.trends.recent_on_service(key, since=window_start, limit=sample)
        if len(trend) < settings.trend_threshold:
            continue
        number = await uow.trends.mark_suggested(
            basis, key, at=now, window_start=window_start, incidents=trend
        )
        if number is None:
            continue
        opened: Problem | None = None
        if settings.trend_opens_problem:
            opened, linked = await _open_from_trend(uow, basis, key, trend, settings)
            await uow.trends.set_problem(basis, key, opened.id)
            current = next((i for i in linked if i.id == incident.id), current)
        suggestion = ProblemSuggestedV1(
            ci_id=key if basis == "ci" else None,
            service=key if basis == "service" else None,
            incidents=[str(i) for i in trend],
            window_seconds=settings.trend_window_seconds,
            threshold=settings.trend_threshold,
            opened_problem_id=str(opened.id) if opened else None,
        )
        uow.record(f"trend/{basis}/{key}", number, [suggestion])
        if uow.metrics is not None:
            uow.metrics.problem_suggestions.labels(basis).inc()
    return current


async def _open_from_trend(
    uow: IncidentWork,
    basis: str,
    key: str,
    incidents: list[uuid.UUID],
    settings: TenantSettings,
) -> tuple[Problem, list[Incident]]:
    """Open a problem (origin trend) on the key, linking those of the incidents that can still
    change (a closed one stays out of the links, and in the suggestion)."""
    now = datetime.now(UTC)
    if basis == "ci":
        ci = await uow.projection.ci_by_id(key)
        what = f"configuration item {ci.name if ci else key}"
    else:
        service = await uow.projection.service_by_id(key)
        what = f"service {service.name if service else key}"
    problem_id = new_id()
    number = await uow.numbers.next("problem")
    linked = await link_incidents(
        uow, problem_id, number, tuple(incidents), now, field="incidents", strict=False
    )
    problem, events = domain.open_problem(
        problem_id=problem_id,
        tenant_id=uow.tenant_id,
        number=number,
        title=f"Recurring incidents on {what}"[:200],
        description=(
            f"{len(incidents)} incidents on {what} within {settings.trend_window_seconds} s"
            f" (threshold {settings.trend_threshold}); opened from the trend."
        ),
        actor=uow.context.actor,
        now=now,
        ci_id=uuid.UUID(key) if basis == "ci" else None,
        service=key if basis == "service" else None,
        origin="trend",
        incidents=[i.id for i in linked],
    )
    await store_new_problem(uow, problem, events)
    return problem, linked
