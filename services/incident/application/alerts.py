"""Alert intake: apply an alert intent to the incident of its alert group, one incident a group.

The entry point validates the body; `receive_alert` reads the tenant's alert mapping in a short
unit of work, turns the body into an `AlertIntent` with no connection held (pure, see
`domain/alerts.py`), then applies it in one write unit of work: the group's row
(`uow.alert_groups`) is claimed first and locked to the end, so notifications of one group
arriving together on several connections or replicas apply one after the other and never open
a second incident, while notifications of different groups lock different rows. The CI and
service lookups in the projection run before the group is claimed, so the lock is held only
for the incident write.

What a notification does (`next_step`), by its action and the state of the group's incident:

| action      | the group's incident                      | step       | outcome                 |
|-------------|-------------------------------------------|------------|-------------------------|
| trigger     | none yet                                  | open       | `opened`                |
| trigger     | new, in_progress, on_hold                 | update     | `updated` / `unchanged` |
| trigger     | resolved                                  | reopen     | `reopened`              |
| trigger     | closed, cancelled                         | open       | `opened` (a new one)    |
| acknowledge | new                                       | start_work | `acknowledged`          |
| acknowledge | any other                                 | note       | `noted`                 |
| resolve     | new, in_progress, on_hold; auto_resolve   | resolve    | `resolved`              |
| resolve     | any other, or auto_resolve off            | note       | `noted`                 |
| ack/resolve | none (unknown group)                      | ignore     | `ignored`               |

- open: `log_incident_in` with origin `alertmanager` or `events`; title, description, impact
  and urgency from the intent; the CI from the intent's reference (by name or external id) and
  the business service by name, each only when the projection knows it; a reference it does
  not know is said at the top of the description, and the alert is never refused for it. After
  a closed or cancelled incident, the new one gets a work note naming its predecessor.
- update: description (with the same remarks on references), impact and urgency from the
  intent through the domain's `update` (priority from the tenant's matrix, SLA clocks
  retargeted on a new priority); title, CI and services stay as they are (people may have
  corrected them). Nothing new: `unchanged`, and the version does not move.
- Moves are automatic (`automatic` in the transitioned event) and go through the handlers'
  `move_incident`, as people's moves do: history, SLA clocks, the auto-close queue.
- reopen: an automatic move to in_progress with a work note, then the update.
- start_work: an automatic move to in_progress (the response clock stops) with a work note.
- resolve: the intent's `resolution_note` as a work note, then an automatic move to resolved
  with code `ALERT_RESOLUTION_CODE` and that note as resolution notes.
- note: the resolution note (resolve) or the acknowledgement as a work note; state unchanged.
- ignore: nothing stored (the group's row is not kept).

Every applied notification is counted on its group (notifications, alerts, deduplicated);
`deduplicated` counts the alerts of triggers that went to the incident the group already had
(updated, unchanged or reopened). Metrics are counted after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import asyncpg

from services.incident.application import sla
from services.incident.application.handlers import (
    LogIncident,
    log_incident_in,
    move_incident,
    note_incident,
)
from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import IncidentWork, TenantSettings, store_change
from services.incident.domain import incident as domain
from services.incident.domain.alerts import (
    MAX_DESCRIPTION,
    AlertIntent,
    AlertMapping,
    CiRef,
    resolution_note,
)
from services.incident.domain.incident import Incident
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext

Outcome = Literal[
    "opened",
    "updated",
    "unchanged",
    "reopened",
    "acknowledged",
    "resolved",
    "noted",
    "ignored",
]
Step = Literal["open", "update", "reopen", "start_work", "resolve", "note", "ignore"]

OPEN_STATES: Final = frozenset({"new", "in_progress", "on_hold"})
FINAL_STATES: Final = frozenset({"closed", "cancelled"})
# The alert stopped firing: the symptom is gone and nobody recorded a fix. Of the fixed codes
# (workflow.RESOLUTION_CODES) this is the one that claims no fix (solved_*), no person
# (resolved_by_caller) and no failure (not_solved); people who fixed it resolve it themselves
# first, with their code, and the alert then only adds its note.
ALERT_RESOLUTION_CODE: Final = "alert_cleared"
_REMARKS_SEPARATOR: Final = "\n\n"


@dataclass(frozen=True)
class Links:
    """What an intent's references found in the projection, and what they did not."""

    ci_id: uuid.UUID | None = None
    services: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertReceipt:
    """What a notification did: its group, the outcome and the group's incident (if any)."""

    source: str
    dedup_key: str
    outcome: Outcome
    incident_id: uuid.UUID | None
    reference: str | None
    alerts: int


@dataclass(frozen=True)
class Applied:
    """What a notification did on the unit of work: its outcome and the group's incident."""

    outcome: Outcome
    incident: Incident | None


def next_step(action: str, state: str | None, *, auto_resolve: bool) -> Step:
    """What a notification does to its group's incident (`state` None: the group has none)."""
    if action == "trigger":
        if state is None or state in FINAL_STATES:
            return "open"
        return "reopen" if state == "resolved" else "update"
    if state is None:
        return "ignore"
    if action == "acknowledge":
        return "start_work" if state == "new" else "note"
    if action == "resolve":
        return "resolve" if auto_resolve and state in OPEN_STATES else "note"
    raise ValueError(f"unknown alert action {action!r}")


def describe(description: str, remarks: tuple[str, ...]) -> str:
    """The incident's description: what could not be linked first, then the alerts; bounded."""
    text = _REMARKS_SEPARATOR.join([*remarks, description]) if remarks else description
    if len(text) <= MAX_DESCRIPTION:
        return text
    marker = "\n… (truncated)"
    return text[: MAX_DESCRIPTION - len(marker)] + marker


def reference_of(incident: Incident) -> str | None:
    """INC<number>, as the API shows it."""
    return f"INC{incident.number}" if incident.number else None


def _ci_words(ref: CiRef) -> str:
    if ref.match == "external_id":
        return f"configuration item with external id {ref.value!r} in source {ref.source}"
    return f"configuration item named {ref.value!r}"


async def find_links(uow: IncidentWork, intent: AlertIntent) -> Links:
    """The CI and business service the intent names, as far as the projection knows them."""
    ci_id: uuid.UUID | None = None
    remarks: list[str] = []
    if intent.ci_ref is not None:
        ref = intent.ci_ref
        if ref.match == "external_id" and ref.source is not None:
            ci = await uow.projection.ci_by_external_id(ref.source, ref.value)
        else:
            ci = await uow.projection.ci_by_name(ref.value)
        try:
            ci_id = uuid.UUID(ci.id) if ci is not None else None
        except ValueError:
            ci_id = None
        if ci_id is None:
            remarks.append(f"Not linked: the alerts name a {_ci_words(ref)}, which is not known.")
    services: tuple[str, ...] = ()
    if intent.service_ref is not None:
        service = await uow.projection.service_by_name(intent.service_ref)
        if service is None:
            remarks.append(
                f"Not linked: the alerts name a business service {intent.service_ref!r},"
                " which is not known."
            )
        else:
            services = (service.id,)
    return Links(ci_id, services, tuple(remarks))


async def receive_alert(
    pool: asyncpg.Pool,
    intent_of: Callable[[AlertMapping], AlertIntent],
    context: RequestContext,
    *,
    metrics: IncidentMetrics | None = None,
) -> AlertReceipt:
    """Apply one validated notification (`intent_of` maps it under the tenant's mapping)."""
    async with unit_of_work(pool, context) as reading:
        settings = await reading.settings.get()
    intent = intent_of(settings.alert_mapping)
    async with unit_of_work(pool, context, metrics) as uow:
        applied = await apply_alert(uow, intent, settings)
    _count(metrics, intent, applied)
    incident = applied.incident
    return AlertReceipt(
        source=intent.source,
        dedup_key=intent.dedup_key,
        outcome=applied.outcome,
        incident_id=incident.id if incident is not None else None,
        reference=reference_of(incident) if incident is not None else None,
        alerts=intent.alert_count,
    )


async def apply_alert(
    uow: IncidentWork,
    intent: AlertIntent,
    settings: TenantSettings,
    *,
    now: datetime | None = None,
) -> Applied:
    """On the unit of work: find the intent's links, claim the group, act on its incident."""
    now = now or datetime.now(UTC)
    links = await find_links(uow, intent) if intent.action == "trigger" else Links()
    claimed = await uow.alert_groups.claim(intent.source, intent.dedup_key, at=now)
    group = claimed.group
    current = (
        await uow.incidents.get(group.incident_id, lock=True)
        if group.incident_id is not None
        else None
    )
    step = next_step(
        intent.action, current.state if current else None, auto_resolve=intent.auto_resolve
    )
    if step == "ignore":
        if claimed.created:
            await uow.alert_groups.forget(intent.source, intent.dedup_key)
        return Applied("ignored", current)
    applied = await _act(uow, step, current, intent, links, settings, now)
    assert applied.incident is not None
    deduplicated = step in ("update", "reopen")
    await uow.alert_groups.record(
        group,
        incident_id=applied.incident.id,
        opened=step == "open",
        alerts=intent.alert_count,
        deduplicated=intent.alert_count if deduplicated else 0,
        action=intent.action,
        outcome=applied.outcome,
        at=now,
    )
    return applied


async def _act(
    uow: IncidentWork,
    step: Step,
    current: Incident | None,
    intent: AlertIntent,
    links: Links,
    settings: TenantSettings,
    now: datetime,
) -> Applied:
    if step == "open":
        opened = await _open(uow, intent, links, now)
        if current is not None:
            await note_incident(
                uow,
                opened,
                f"The alert group fires again after its incident {_name(current)} was"
                f" {current.state}: this incident follows it.",
                at=now,
            )
        return Applied("opened", opened)
    assert current is not None
    if step == "update":
        updated = await _update(uow, current, intent, links, settings, now)
        return Applied("updated" if updated is not current else "unchanged", updated)
    if step == "reopen":
        reopened = await _move(uow, current, "in_progress", now)
        await note_incident(
            uow,
            reopened,
            f"The alert group fires again ({_alerts(intent.alert_count)}): reopened automatically.",
            at=now,
        )
        updated = await _update(uow, reopened, intent, links, settings, now)
        return Applied("reopened", updated)
    if step == "start_work":
        started = await _move(uow, current, "in_progress", now)
        await note_incident(uow, started, _acknowledged(intent, started=True), at=now)
        return Applied("acknowledged", started)
    if intent.action == "resolve":
        note = resolution_note(intent, received_at=now)
        if step == "resolve":
            resolved = await _move(
                uow,
                current,
                "resolved",
                now,
                resolution_code=ALERT_RESOLUTION_CODE,
                resolution_notes=note,
            )
            await note_incident(uow, resolved, note, at=now)
            return Applied("resolved", resolved)
        await note_incident(uow, current, note, at=now)
        return Applied("noted", current)
    await note_incident(uow, current, _acknowledged(intent, started=False), at=now)
    return Applied("noted", current)


async def _open(uow: IncidentWork, intent: AlertIntent, links: Links, now: datetime) -> Incident:
    if intent.title is None or intent.impact is None or intent.urgency is None:
        raise ValueError("a trigger intent carries a title, an impact and an urgency")
    command = LogIncident(
        title=intent.title,
        description=describe(intent.description or "", links.remarks),
        impact=intent.impact,
        urgency=intent.urgency,
        ci_id=links.ci_id,
        services=links.services,
        origin=intent.source,
    )
    return await log_incident_in(uow, command, now=now)


async def _update(
    uow: IncidentWork,
    incident: Incident,
    intent: AlertIntent,
    links: Links,
    settings: TenantSettings,
    now: datetime,
) -> Incident:
    """The intent's description, impact and urgency on an open incident (itself if no change)."""
    wanted = {
        "description": describe(intent.description or "", links.remarks),
        "impact": intent.impact,
        "urgency": intent.urgency,
    }
    change = domain.update(
        incident,
        {name: value for name, value in wanted.items() if value is not None},
        actor=uow.context.actor,
        now=now,
        matrix=settings.matrix,
        reason="alert",
    )
    if change is None:
        return incident
    stored = await store_change(uow, change, "updated")
    if "priority" in change.changes:
        await sla.retarget(
            uow, record="incident", record_id=stored.id, at=now, priority=stored.priority
        )
    return stored


async def _move(
    uow: IncidentWork,
    incident: Incident,
    wanted: str,
    now: datetime,
    *,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
) -> Incident:
    """An automatic move, as any move: history, event, SLA clocks, the auto-close queue."""
    return await move_incident(
        uow,
        incident,
        wanted,
        now=now,
        resolution_code=resolution_code,
        resolution_notes=resolution_notes,
        automatic=True,
    )


def _name(incident: Incident) -> str:
    return reference_of(incident) or str(incident.id)


def _alerts(count: int) -> str:
    return "1 alert" if count == 1 else f"{count} alerts"


def _acknowledged(intent: AlertIntent, *, started: bool) -> str:
    text = f"The monitoring tool acknowledged the alert (dedup key {intent.dedup_key})"
    return text + (": work started." if started else ".")


def _count(metrics: IncidentMetrics | None, intent: AlertIntent, applied: Applied) -> None:
    """Alert intake metrics, once the notification is committed."""
    if metrics is None:
        return
    source = intent.source
    metrics.alerts_received.labels(source).inc(intent.alert_count)
    if applied.outcome in ("updated", "unchanged", "reopened"):
        metrics.alerts_deduplicated.labels(source).inc(intent.alert_count)
    elif applied.outcome == "opened":
        metrics.alert_incidents_opened.labels(source).inc()
    elif applied.outcome == "resolved":  # incidents_resolved: counted by the move itself
        metrics.alert_incidents_resolved.labels(source).inc()
