"""The change service's projection of the incident service's events (consumer
`change-incident-projection`, `entrypoints/consumers.py`).

Rule 1 of the house: the change service never calls the incident service. It keeps, in
`proj_incidents`, the incidents it cares about: which are open major incidents on which business
services and CIs (risk and schedule conflicts read `open_major_incidents`), and which exist at
all (an emergency change must link to an incident the projection knows: `incident_exists`).
In `proj_change_suspicions` it keeps the incidents the incident service flagged as possibly
caused by a change (`itsm.incident.change_suspected.v1`), the evidence of a change's outcome.

Writes tolerate redelivery and replay: every row keeps the incident's version of the last
event applied, and an event with an older version changes nothing (several events of one
version, such as an update and the major declaration it caused, all apply). Events of one
incident arrive in order (its id is the message key), so this only matters for replays and
rebuilds.

An incident whose `itsm.incident.created.v1` has not arrived yet is unknown here: an emergency
change naming it is refused (422 naming `incident_ids`) and may be raised again a moment later.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.db import Connection
from shared.events.catalogue import (
    ChangeSuspectedV1,
    IncidentCreatedV1,
    IncidentTransitionedV1,
    IncidentUpdatedV1,
    MajorIncidentDeclaredV1,
)
from shared.events.envelope import Envelope

# States in which an incident no longer counts as open.
ENDED = ("resolved", "closed", "cancelled")


@dataclass(frozen=True)
class MajorIncident:
    """An open major incident, as a change's risk and schedule see it."""

    incident_id: uuid.UUID
    number: int | None
    title: str
    services: tuple[str, ...]
    ci_id: uuid.UUID | None
    declared_at: datetime | None


@dataclass(frozen=True)
class SuspectedIncident:
    """An incident the incident service flagged as possibly caused by a change."""

    incident_id: uuid.UUID
    ci_id: str
    implemented_at: datetime
    flagged_at: datetime


def _uuid(value: str | None) -> uuid.UUID | None:
    """A CI id from an event; an id that is no UUID matches no change's CI (they all are)."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def apply_incident_event(conn: Connection, envelope: Envelope, payload: object) -> None:
    """Apply one incident event to `proj_incidents` (the caller's transaction and tenant)."""
    tenant_id = envelope.tenantid
    incident_id = uuid.UUID(envelope.subject)
    version = envelope.itsmversion
    at = envelope.time
    if isinstance(payload, IncidentCreatedV1):
        # A create is the first version: it replaces nothing newer.
        await conn.execute(
            "INSERT INTO proj_incidents (tenant_id, id, number, title, state, major, services,"
            " ci_id, declared_at, version, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $6 THEN $9::timestamptz END,"
            " $10, $9)"
            " ON CONFLICT (tenant_id, id) DO UPDATE SET number = EXCLUDED.number,"
            " title = EXCLUDED.title, services = EXCLUDED.services, ci_id = EXCLUDED.ci_id,"
            " major = proj_incidents.major OR EXCLUDED.major,"
            " declared_at = coalesce(proj_incidents.declared_at, EXCLUDED.declared_at)"
            " WHERE proj_incidents.version <= EXCLUDED.version",
            tenant_id,
            incident_id,
            payload.number,
            payload.title,
            payload.state,
            payload.major,
            list(payload.services),
            _uuid(payload.ci_id),
            at,
            version,
        )
    elif isinstance(payload, MajorIncidentDeclaredV1):
        await conn.execute(
            "INSERT INTO proj_incidents (tenant_id, id, title, state, major, services, ci_id,"
            " declared_at, version, updated_at)"
            " VALUES ($1, $2, $3, 'new', true, $4, $5, $6, $7, $6)"
            " ON CONFLICT (tenant_id, id) DO UPDATE SET major = true, title = EXCLUDED.title,"
            " services = EXCLUDED.services, ci_id = EXCLUDED.ci_id,"
            " declared_at = coalesce(proj_incidents.declared_at, EXCLUDED.declared_at),"
            " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
            " WHERE proj_incidents.version <= EXCLUDED.version",
            tenant_id,
            incident_id,
            payload.title,
            list(payload.services),
            _uuid(payload.ci_id),
            at,
            version,
        )
    elif isinstance(payload, IncidentTransitionedV1):
        ended = payload.to_state in ENDED
        await conn.execute(
            "UPDATE proj_incidents SET state = $3,"
            " resolved_at = CASE WHEN $4 THEN coalesce(resolved_at, $5) END,"
            " version = $6, updated_at = $5"
            " WHERE tenant_id = $1 AND id = $2 AND version <= $6",
            tenant_id,
            incident_id,
            payload.to_state,
            ended,
            at,
            version,
        )
    elif isinstance(payload, IncidentUpdatedV1):
        await _apply_update(conn, envelope, incident_id, payload)
    else:
        raise TypeError(f"the incident projection does not apply {envelope.type}")


async def _apply_update(
    conn: Connection, envelope: Envelope, incident_id: uuid.UUID, payload: IncidentUpdatedV1
) -> None:
    """Services (always carried), and the CI, title and major flag when they changed."""
    changes = payload.changes
    ci = changes.get("ci_id")
    title = changes.get("title")
    major = changes.get("major")
    await conn.execute(
        "UPDATE proj_incidents SET services = $3,"
        " ci_id = CASE WHEN $4 THEN $5::uuid ELSE ci_id END,"
        " title = coalesce($6, title),"
        " major = coalesce($7, major),"
        " version = $8, updated_at = $9"
        " WHERE tenant_id = $1 AND id = $2 AND version <= $8",
        envelope.tenantid,
        incident_id,
        list(payload.services),
        ci is not None,
        _uuid(ci.get("to")) if ci is not None else None,
        title.get("to") if title is not None else None,
        bool(major.get("to")) if major is not None else None,
        envelope.itsmversion,
        envelope.time,
    )


async def apply_suspicion(conn: Connection, envelope: Envelope, payload: ChangeSuspectedV1) -> None:
    """Record that the incident (the subject) may have been caused by the change; once."""
    await conn.execute(
        "INSERT INTO proj_change_suspicions"
        " (tenant_id, change_id, incident_id, ci_id, implemented_at, flagged_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        envelope.tenantid,
        payload.change_id,
        uuid.UUID(envelope.subject),
        payload.ci_id,
        payload.implemented_at,
        envelope.time,
    )


async def open_major_incidents(
    conn: Connection,
    tenant_id: str,
    *,
    services: Sequence[str],
    ci_ids: Sequence[uuid.UUID],
) -> list[MajorIncident]:
    """Open major incidents on any of these business services or CIs, oldest declared first."""
    if not services and not ci_ids:
        return []
    rows = await conn.fetch(
        "SELECT id, number, title, services, ci_id, declared_at FROM proj_incidents"
        " WHERE tenant_id = $1 AND major AND resolved_at IS NULL"
        " AND (services && $2::text[] OR ci_id = ANY($3::uuid[]))"
        " ORDER BY declared_at NULLS LAST, id",
        tenant_id,
        list(services),
        list(ci_ids),
    )
    return [
        MajorIncident(
            incident_id=r["id"],
            number=r["number"],
            title=r["title"],
            services=tuple(r["services"]),
            ci_id=r["ci_id"],
            declared_at=r["declared_at"],
        )
        for r in rows
    ]


async def incident_exists(conn: Connection, tenant_id: str, incident_id: uuid.UUID) -> bool:
    """Whether the projection knows this incident (its creation has arrived)."""
    found = await conn.fetchval(
        "SELECT true FROM proj_incidents WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        incident_id,
    )
    return bool(found)


async def unknown_incidents(
    conn: Connection, tenant_id: str, incident_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Those of these incidents the projection does not know, in the order given."""
    if not incident_ids:
        return []
    rows = await conn.fetch(
        "SELECT id FROM proj_incidents WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
        tenant_id,
        list(incident_ids),
    )
    known = {r["id"] for r in rows}
    return [i for i in incident_ids if i not in known]


async def suspected_incidents(
    conn: Connection, tenant_id: str, change_id: str
) -> list[SuspectedIncident]:
    """Incidents flagged as possibly caused by this change, first flagged first."""
    rows = await conn.fetch(
        "SELECT incident_id, ci_id, implemented_at, flagged_at FROM proj_change_suspicions"
        " WHERE tenant_id = $1 AND change_id = $2 ORDER BY flagged_at, incident_id",
        tenant_id,
        change_id,
    )
    return [
        SuspectedIncident(r["incident_id"], r["ci_id"], r["implemented_at"], r["flagged_at"])
        for r in rows
    ]
