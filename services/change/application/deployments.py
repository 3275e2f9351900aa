"""The deployment gate's use cases (ISO/IEC 20000-1 8.5.3): announce, poll, record an outcome.

- `announce`: idempotent on (pipeline, environment, sequence): the same announcement returns
  the same deployment and decision; the same key announced with other content is a 409. A
  production deployment (the tenant's environment names) that names no change registers one
  first: a standard change where an active template of its service matches
  (`TemplateCatalogue`), otherwise an unauthorized change (origin `unauthorized`) for review.
- The decision itself is `domain/deployments.decide`, fed by `GateChecks`: the change's
  authorization (`application/approvals.py`) and what the schedule finds (blackouts and
  conflicts, `application/schedule.py`); tests give it fakes.
- `poll`: an `awaiting` decision is decided again (the approvals may have completed since),
  and a changed decision is announced again.
- `record_status`: succeeded / failed / rolled back, with its time and log URL; a deployment
  of a release is also recorded on the release (`application/releases.py`).
- `put_settings`: the gate settings (which environments are production) are versioned like the
  change settings: If-Match on the version ("0" the first time), each version announced by
  `itsm.change.gate_settings_changed.v1` in the same transaction.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from services.change.adapters import deployments as store
from services.change.adapters import releases as release_store
from services.change.adapters.deployments import Deployment, GateSettings
from services.change.application import approvals, releases, schedule
from services.change.application.uow import ChangeUnitOfWork, store_change, store_new_change
from services.change.domain import change as changes
from services.change.domain.change import Change
from services.change.domain.deployments import (
    Announcement,
    Artifact,
    AuthorizationStatus,
    ChangeFacts,
    Decision,
    Reason,
    ScheduleFinding,
    check_artifacts,
    check_status_move,
    decide,
)
from shared.errors import Conflict, FieldError, NotFound, StaleVersion
from shared.events.catalogue import (
    ChangeGateSettingsChangedV1,
    DeploymentRecordedV1,
    GateDecidedV1,
    GateReasonV1,
)
from shared.ids import new_id

# The subject of the gate settings' events (one per tenant; itsmversion is the version).
GATE_SETTINGS_SUBJECT = "gate-settings"
# How long the window of a change registered by a deployment is: the deployment is now.
REGISTERED_WINDOW = timedelta(hours=4)


# The gate reads and writes its tables on the unit of work's connection.
GateWork = ChangeUnitOfWork


class GateChecks(Protocol):
    """What the gate asks of the approvals (cab) and the schedule (schedule)."""

    async def authorization(self, uow: GateWork, change: Change) -> AuthorizationStatus:
        """The change's authorization status (valid only for its current content hash)."""
        ...

    async def findings(self, uow: GateWork, change: Change) -> list[ScheduleFinding]:
        """Blackouts covering the change's CIs and the other conflicts of its window."""
        ...


class CollaboratorGateChecks:
    """The real checks: the approvals' `authorization` (valid for the change's current content
    hash only) and every conflict the schedule finds for the change's window."""

    async def authorization(self, uow: GateWork, change: Change) -> AuthorizationStatus:
        """The approvals' status of the change."""
        found = await approvals.authorization(uow, change)
        return cast(AuthorizationStatus, found.status)

    async def findings(self, uow: GateWork, change: Change) -> list[ScheduleFinding]:
        """Every conflict of the change's window (blackouts by kind), with all its CIs."""
        found = await schedule.conflicts(uow, change)
        return [
            ScheduleFinding(
                kind=str(c.kind),
                detail=str(c.detail),
                ci_ids=tuple(str(ci) for ci in c.ci_ids),
            )
            for c in found
        ]


@dataclass(frozen=True)
class TemplateMatch:
    """An active standard-change template for a service, with what a standard change takes
    from its template (as `POST /changes` raises one): the plans and the risk level."""

    id: uuid.UUID
    title: str
    implementation_plan: str | None = None
    backout_plan: str | None = None
    test_plan: str | None = None
    risk_level: str = "low"


class TemplateCatalogue(Protocol):
    """The catalogue of standard changes (rfc's templates): one active template matching."""

    async def matching(
        self, uow: GateWork, services: Sequence[str], ci_ids: Sequence[uuid.UUID]
    ) -> TemplateMatch | None:
        """An active template of one of these services, or None."""
        ...


class StandardChangeCatalogue:
    """The tenant's catalogue of standard changes: the first active template (by name) whose
    business service is one of the deployment's services or whose CIs include one of its
    CIs."""

    async def matching(
        self, uow: GateWork, services: Sequence[str], ci_ids: Sequence[uuid.UUID]
    ) -> TemplateMatch | None:
        """An active template of one of these services or CIs, or None."""
        wanted_services, wanted_cis = set(services), set(ci_ids)
        for template in await uow.templates.all(active=True):
            if template.business_service in wanted_services or wanted_cis & set(template.ci_ids):
                return TemplateMatch(
                    template.id,
                    template.name,
                    implementation_plan=template.implementation_plan,
                    backout_plan=template.backout_plan,
                    test_plan=template.test_plan,
                    risk_level=template.risk_level,
                )
        return None


@dataclass(frozen=True)
class Gate:
    """What the gate's use cases are given: the checks and the template catalogue."""

    checks: GateChecks
    templates: TemplateCatalogue


@functools.cache
def default_gate() -> Gate:
    """The gate as the service runs it: the approvals and the schedule, the catalogue."""
    return Gate(CollaboratorGateChecks(), StandardChangeCatalogue())


@dataclass(frozen=True)
class Announced:
    """A deployment and whether this call created it."""

    deployment: Deployment
    created: bool


def deployment_view(deployment: Deployment) -> dict[str, Any]:
    """The deployment as the API shows it (JSON-ready). Built field by field: `asdict`'s deep
    copy was a few per cent of a gate decision's CPU."""
    view = {f.name: getattr(deployment, f.name) for f in fields(deployment)}
    view.pop("fingerprint")
    view.pop("tenant_id")
    view["artifacts"] = [dict(a) for a in deployment.artifacts]
    view["reasons"] = [dict(r) for r in deployment.reasons]
    view["external"] = dict(deployment.external)
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
    view["services"] = list(deployment.services)
    view["ci_ids"] = [str(c) for c in deployment.ci_ids]
    view["poll_url"] = f"/deployments/{deployment.id}"
    return view


def _reasons(decision: Decision) -> list[dict[str, Any]]:
    return [
        {"code": r.code, "detail": r.detail, "ci_ids": list(r.ci_ids)} for r in decision.reasons
    ]


def _decided(deployment: Deployment) -> GateDecidedV1:
    return GateDecidedV1(
        deployment_id=str(deployment.id),
        pipeline=deployment.pipeline,
        environment=deployment.environment,
        sequence=deployment.sequence,
        source=deployment.source,
        result=deployment.decision,
        reasons=[GateReasonV1(**r) for r in deployment.reasons],
        change_id=str(deployment.change_id) if deployment.change_id else None,
        release_id=str(deployment.release_id) if deployment.release_id else None,
        registered=deployment.registered,
        artifact_digests=[a["digest"] for a in deployment.artifacts],
        commit=deployment.commit,
    )


async def _facts(gate: Gate, uow: GateWork, change: Change) -> ChangeFacts:
    return ChangeFacts(
        id=change.id,
        state=change.state,
        origin=change.origin,
        affected_cis=change.affected_cis,
        business_services=change.business_services,
        planned_start=change.planned_start,
        planned_end=change.planned_end,
        authorization=await gate.checks.authorization(uow, change),
        findings=tuple(await gate.checks.findings(uow, change)),
    )


async def decide_for(
    gate: Gate,
    uow: GateWork,
    announcement: Announcement,
    change_id: uuid.UUID | None,
    *,
    production: bool,
    now: datetime,
    change: Change | None = None,
) -> Decision:
    """The gate's decision on an announcement against the change it names (or none); a
    deployment of a release is also prevented when its digests did not succeed in the
    environment before this one (`promotion`). `change`: that change, when the caller read it
    in this transaction already."""
    if change is not None and change.id != change_id:
        change = None
    if change_id is None:
        decision = decide(announcement, None, production=production, now=now)
    elif change is None and (change := await uow.changes.get(change_id)) is None:
        decision = decide(announcement, None, production=production, now=now, change_missing=True)
    else:
        facts = await _facts(gate, uow, change)
        decision = decide(announcement, facts, production=production, now=now)
    if announcement.release_id is not None and announcement.artifacts:
        digests = {a.name: a.digest for a in announcement.artifacts}
        refused = await releases.promotion_refusal(
            uow, announcement.release_id, announcement.environment, digests
        )
        if refused is not None:
            reasons = (*decision.reasons, Reason("promotion", refused))
            decision = Decision("prevented", reasons)
    return decision


async def _register_change(
    gate: Gate, uow: GateWork, announcement: Announcement, now: datetime
) -> tuple[Change, str]:
    """A change for a production deployment that named none: standard from a matching
    template (scheduled at once, its window now), otherwise unauthorized, for review."""
    template = await gate.templates.matching(uow, announcement.services, announcement.ci_ids)
    what = f"{announcement.pipeline} #{announcement.sequence} to {announcement.environment}"
    artifacts = ", ".join(f"{a.name} {a.version} ({a.digest})" for a in announcement.artifacts)
    common: dict[str, Any] = {
        "tenant_id": uow.tenant_id,
        "number": await uow.changes.next_number(),
        "description": f"Registered by the deployment gate for {what}."
        + (f" Artifacts: {artifacts}." if artifacts else "")
        + (f" Commit {announcement.commit}." if announcement.commit else ""),
        "requester": uow.context.actor,
        "actor": uow.context.actor,
        "now": now,
        "affected_cis": announcement.ci_ids,
        "business_services": announcement.services,
        "planned_start": now,
        "planned_end": now + REGISTERED_WINDOW,
    }
    if template is not None:
        change, events = changes.open_change(
            type="standard",
            origin="deployment",
            title=f"{template.title}: {what}"[:200],
            justification=f"standard change from template {template.id}",
            template_id=template.id,
            implementation_plan=template.implementation_plan,
            backout_plan=template.backout_plan,
            test_plan=template.test_plan,
            risk_level=template.risk_level,
            **common,
        )
        await store_new_change(uow, change, events)
        moved = changes.transition(change, "scheduled", actor=uow.context.actor, now=now)
        return await store_change(uow, moved, "scheduled"), "standard"
    change, events = changes.open_change(
        type="normal",
        origin="unauthorized",
        title=f"Unauthorized deployment: {what}"[:200],
        justification="a production deployment announced without a change, for review",
        **common,
    )
    await store_new_change(uow, change, events)
    return change, "unauthorized"


async def announce(
    gate: Gate,
    uow: GateWork,
    announcement: Announcement,
    *,
    now: datetime | None = None,
    external: dict[str, Any] | None = None,
) -> Announced:
    """Announce a deployment and decide on it, once per (pipeline, environment, sequence);
    `external` is what the tool knows it by (GitHub's deployment id and callback URL)."""
    now = now or datetime.now(UTC)
    check_artifacts(announcement.artifacts)
    key = (announcement.pipeline, announcement.environment, announcement.sequence)
    # One round trip takes the key's lock and reads the settings and the change named.
    context = await store.gate_context(
        uow.conn, uow.tenant_id, *key, change_id=announcement.change_id
    )
    existing = await store.by_key(uow.conn, uow.tenant_id, *key)
    if existing is not None:
        if existing.fingerprint != announcement.fingerprint:
            raise Conflict(
                f"deployment {key[0]} #{key[2]} to {key[1]} was announced with other content",
                fields=[FieldError("sequence", "already announced with other content")],
            )
        return Announced(await _refresh(gate, uow, existing, now), created=False)
    production = context.settings.is_production(announcement.environment)
    release_id = announcement.release_id
    if (
        release_id is not None
        and await release_store.get(uow.conn, uow.tenant_id, release_id) is None
    ):
        raise NotFound("release", str(release_id))
    change_id, registered = announcement.change_id, None
    if change_id is None and production:
        change, registered = await _register_change(gate, uow, announcement, now)
        change_id = change.id
    decision = await decide_for(
        gate,
        uow,
        announcement,
        change_id,
        production=production,
        now=now,
        change=context.change if registered is None else None,
    )
    deployment = Deployment(
        tenant_id=uow.tenant_id,
        id=new_id(),
        pipeline=announcement.pipeline,
        environment=announcement.environment,
        sequence=announcement.sequence,
        source=announcement.source,
        services=announcement.services,
        ci_ids=announcement.ci_ids,
        artifacts=[asdict(a) for a in announcement.artifacts],
        commit=announcement.commit,
        change_id=change_id,
        release_id=announcement.release_id,
        registered=registered,
        fingerprint=announcement.fingerprint,
        decision=decision.result,
        reasons=_reasons(decision),
        decided_at=now,
        status="announced",
        status_at=None,
        log_url=None,
        version=1,
        created_at=now,
        created_by=uow.context.actor,
        updated_at=now,
        external=dict(external or {}),
    )
    await store.insert(uow.conn, deployment)
    uow.record(str(deployment.id), deployment.version, [_decided(deployment)])
    return Announced(deployment, created=True)


def _announcement_of(deployment: Deployment) -> Announcement:
    return Announcement(
        pipeline=deployment.pipeline,
        environment=deployment.environment,
        sequence=deployment.sequence,
        source=deployment.source,  # type: ignore[arg-type]
        services=deployment.services,
        ci_ids=deployment.ci_ids,
        artifacts=tuple(Artifact(**a) for a in deployment.artifacts),
        commit=deployment.commit,
        change_id=deployment.change_id,
        release_id=deployment.release_id,
    )


async def _refresh(gate: Gate, uow: GateWork, deployment: Deployment, now: datetime) -> Deployment:
    """An `awaiting` deployment decided again; a changed decision is a version and an event."""
    if deployment.decision != "awaiting" or deployment.status != "announced":
        return deployment
    settings = await store.gate_settings(uow.conn, uow.tenant_id)
    decision = await decide_for(
        gate,
        uow,
        _announcement_of(deployment),
        deployment.change_id,
        production=settings.is_production(deployment.environment),
        now=now,
    )
    reasons = _reasons(decision)
    if decision.result == deployment.decision and reasons == deployment.reasons:
        return deployment
    after = replace(
        deployment,
        decision=decision.result,
        reasons=reasons,
        decided_at=now,
        version=deployment.version + 1,
        updated_at=now,
    )
    await store.save(uow.conn, after)
    uow.record(str(after.id), after.version, [_decided(after)])
    return after


async def poll(gate: Gate, uow: GateWork, deployment_id: uuid.UUID) -> Deployment:
    """The deployment and its decision, an `awaiting` one decided again."""
    deployment = await store.get(uow.conn, uow.tenant_id, deployment_id, lock=True)
    if deployment is None:
        raise NotFound("deployment", str(deployment_id))
    return await _refresh(gate, uow, deployment, datetime.now(UTC))


async def record_status(
    uow: GateWork,
    deployment: Deployment,
    status: str,
    *,
    at: datetime,
    log_url: str | None,
    now: datetime | None = None,
) -> Deployment:
    """Record a deployment's outcome (409 naming `status` for a move it cannot take)."""
    now = now or datetime.now(UTC)
    check_status_move(deployment.status, status)
    after = replace(
        deployment,
        status=status,
        status_at=at,
        log_url=log_url or deployment.log_url,
        version=deployment.version + 1,
        updated_at=now,
    )
    await store.save(uow.conn, after)
    uow.record(
        str(after.id),
        after.version,
        [
            DeploymentRecordedV1(
                deployment_id=str(after.id),
                environment=after.environment,
                status=status,
                at=at,
                log_url=after.log_url,
                change_id=str(after.change_id) if after.change_id else None,
                release_id=str(after.release_id) if after.release_id else None,
                source=after.source,
            )
        ],
    )
    if after.release_id is not None:
        await releases.record_gate_deployment(uow, after, now=now)
    return after


async def record_status_by_id(
    uow: GateWork,
    deployment_id: uuid.UUID,
    status: str,
    *,
    at: datetime,
    log_url: str | None,
) -> Deployment:
    """`record_status` on the deployment with this id (404 without one)."""
    deployment = await store.get(uow.conn, uow.tenant_id, deployment_id, lock=True)
    if deployment is None:
        raise NotFound("deployment", str(deployment_id))
    return await record_status(uow, deployment, status, at=at, log_url=log_url)


async def change_deployments(uow: GateWork, change_id: uuid.UUID) -> list[Deployment]:
    """A change's deployments, oldest first (404 for an unknown change)."""
    if await uow.changes.get(change_id) is None:
        raise NotFound("change", str(change_id))
    return await store.deployments_of_change(uow.conn, uow.tenant_id, change_id)


async def put_settings(
    uow: GateWork,
    settings: GateSettings,
    *,
    expected_version: int,
    now: datetime | None = None,
) -> GateSettings:
    """Replace the tenant's gate settings if it read the current version (412 otherwise), and
    announce the new version with what changed, in the same transaction."""
    await store.lock_gate_settings(uow.conn, uow.tenant_id)
    current = await store.gate_settings(uow.conn, uow.tenant_id)
    if current.version != expected_version:
        raise StaleVersion("the gate settings", current.version, expected_version)
    stored = replace(settings, version=current.version + 1)
    await store.put_gate_settings(
        uow.conn, uow.tenant_id, stored, actor=uow.context.actor, now=now or datetime.now(UTC)
    )
    before, after = current.as_json(), stored.as_json()
    changed = {k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v}
    event = ChangeGateSettingsChangedV1(settings=after, changes=changed, version=stored.version)
    uow.record(GATE_SETTINGS_SUBJECT, stored.version, [event])
    return stored


async def tool_event(
    gate: Gate,
    uow: GateWork,
    announcement: Announcement,
    *,
    numbered: bool,
    status: str | None,
    at: datetime,
    log_url: str | None,
    external: dict[str, Any],
) -> Announced:
    """What a tool's webhook reports: a deployment it is about to make (`status` None) or one
    it made. The deployment is the one announced as (pipeline, environment, sequence) when the
    tool numbers its deployments (`numbered`, GitHub), else the latest still announced of the
    pipeline and environment at the same commit; one not announced before is announced now
    (a production one registers its change), then its outcome is recorded."""
    now = datetime.now(UTC)
    key = (announcement.pipeline, announcement.environment)
    found: Deployment | None
    if numbered:
        await store.lock_key(uow.conn, uow.tenant_id, *key, announcement.sequence)
        found = await store.by_key(uow.conn, uow.tenant_id, *key, announcement.sequence)
    else:
        await store.lock_key(uow.conn, uow.tenant_id, *key, -1)
        found = await store.announced_at_commit(uow.conn, uow.tenant_id, *key, announcement.commit)
        if found is None:
            sequence = await store.next_sequence(uow.conn, uow.tenant_id, *key)
            announcement = replace(announcement, sequence=sequence)
    if found is None:
        done = await announce(gate, uow, announcement, now=now, external=external)
    else:
        done = Announced(await _refresh(gate, uow, found, now), created=False)
    deployment = done.deployment
    if status is not None and deployment.status != status:
        deployment = await record_status(uow, deployment, status, at=at, log_url=log_url, now=now)
    return Announced(deployment, done.created)
