"""Release use cases (ISO/IEC 20000-1 8.5.3): plan, move, record deployments and evidence.

Each runs on the change service's unit of work; a release is a numbered, versioned record
(REL<number>) with its history, like a change. A deployment through the gate that names a
release is recorded on the release when its outcome is (`record_gate_deployment`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from services.change.adapters import releases as store
from services.change.adapters.deployments import Deployment, gate_settings
from services.change.adapters.releases import RELEASES
from services.change.application.uow import ChangeUnitOfWork, store_change
from services.change.domain import releases as domain
from services.change.domain.change import ChangeChange
from services.change.domain.releases import Release, ReleaseChange
from shared.errors import FieldError, NotFound, ValidationFailed
from shared.events.catalogue import ChangeUpdatedV1
from shared.records.record import apply_change
from shared.records.sql import next_number

# A change in one of these states is not pointed at a release planned afterwards.
FINISHED = frozenset({"closed", "cancelled"})

# Releases read and write their tables on the unit of work's connection.
ReleaseWork = ChangeUnitOfWork


def release_view(release: Release, deployments: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The release as the API shows it (JSON-ready)."""
    view = asdict(release)
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
    view["environments"] = list(release.environments)
    view["changes"] = [str(c) for c in release.changes]
    view["reference"] = release.reference
    view["deployments"] = [deployment_view(d) for d in deployments]
    return view


def deployment_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One deployment of a release, JSON-ready."""
    return {
        "environment": row["environment"],
        "status": row["status"],
        "digests": dict(row["digests"]),
        "evidence": list(row["evidence"]),
        "log_url": row["log_url"],
        "deployment_id": str(row["deployment_id"]) if row["deployment_id"] else None,
        "at": row["at"].isoformat(),
        "by": row["actor"],
    }


async def _store(uow: ReleaseWork, change: ReleaseChange, action: str) -> Release:
    await RELEASES.save(uow.conn, change.record)
    await RELEASES.record_history(uow.conn, change.record, action=action, changes=change.changes)
    uow.record(str(change.record.id), change.record.version, change.events)
    return change.record


async def plan(
    uow: ReleaseWork,
    *,
    name: str,
    environments: Sequence[str] | None,
    changes: Sequence[uuid.UUID],
    artifacts: Sequence[Mapping[str, str]],
) -> Release:
    """Plan a release (REL<n>) for its changes (each must exist) and artifacts, through the
    given environments or the tenant's release order."""
    now = datetime.now(UTC)
    missing = [str(c) for c in changes if await uow.changes.get(c) is None]
    if missing:
        raise ValidationFailed([FieldError("change_ids", f"no change {', '.join(missing)}")])
    order = environments or (await gate_settings(uow.conn, uow.tenant_id)).release_environments
    release, events = domain.plan_release(
        tenant_id=uow.tenant_id,
        number=await next_number(uow.conn, uow.tenant_id, RELEASES.kind),
        name=name,
        environments=order,
        changes=changes,
        artifacts=artifacts,
        actor=uow.context.actor,
        now=now,
    )
    await RELEASES.insert(uow.conn, release)
    await RELEASES.record_history(uow.conn, release, action="created", changes={})
    uow.record(str(release.id), release.version, events)
    for change_id in dict.fromkeys(changes):
        await _point_to(uow, change_id, release.id, now)
    return release


async def _point_to(
    uow: ReleaseWork, change_id: uuid.UUID, release_id: uuid.UUID, now: datetime
) -> None:
    """The change names the release that ships it (a new version, `itsm.change.updated.v1`);
    a finished change keeps what it had."""
    change = await uow.changes.get(change_id, lock=True)
    if change is None or change.state in FINISHED or change.release_id == release_id:
        return
    after, diff = apply_change(change, {"release_id": release_id}, actor=uow.context.actor, now=now)
    updated = ChangeUpdatedV1(
        change_id=str(change.id), changes=diff, content_hash=after.content_hash
    )
    await store_change(uow, ChangeChange(after, diff, [updated]), "release planned")


async def get(uow: ReleaseWork, release_id: uuid.UUID) -> tuple[Release, list[dict[str, Any]]]:
    """A release and its deployments (404 without one)."""
    release = await store.get(uow.conn, uow.tenant_id, release_id)
    if release is None:
        raise NotFound("release", str(release_id))
    return release, await store.deployments(uow.conn, uow.tenant_id, release_id)


async def history(uow: ReleaseWork, release_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a release (404 without one)."""
    await get(uow, release_id)
    return await RELEASES.history(uow.conn, uow.tenant_id, release_id)


async def move(
    uow: ReleaseWork, release_id: uuid.UUID, expected: int, to: str, reason: str | None
) -> Release:
    """Move a release to another state (If-Match version `expected`)."""
    release = await RELEASES.locked(uow.conn, uow.tenant_id, release_id, expected)
    changed = domain.transition(
        release, to, actor=uow.context.actor, now=datetime.now(UTC), reason=reason
    )
    return await _store(uow, changed, to)


async def deploy(
    uow: ReleaseWork,
    release_id: uuid.UUID,
    expected: int | None,
    *,
    environment: str,
    status: str,
    digests: Mapping[str, str],
    evidence: Sequence[str],
    log_url: str | None,
    deployment_id: uuid.UUID | None = None,
    checked: bool = True,
) -> Release:
    """Record a deployment of the release to an environment, promotion checked by digest."""
    now = datetime.now(UTC)
    release = await RELEASES.locked(uow.conn, uow.tenant_id, release_id, expected)
    rows = await store.deployments(uow.conn, uow.tenant_id, release_id)
    changed = domain.record_deployment(
        release,
        environment=environment,
        status=status,
        digests=digests,
        evidence=evidence,
        log_url=log_url,
        deployment_id=deployment_id,
        history=store.as_history(rows),
        actor=uow.context.actor,
        now=now,
        checked=checked,
    )
    await store.add_deployment(
        uow.conn,
        release,
        environment=environment,
        status=status,
        digests=dict(digests),
        evidence=list(evidence),
        log_url=log_url,
        deployment_id=deployment_id,
        at=now,
        actor=uow.context.actor,
    )
    return await _store(uow, changed, f"deployed to {environment}: {status}")


async def promotion_refusal(
    uow: ReleaseWork, release_id: uuid.UUID, environment: str, digests: Mapping[str, str]
) -> str | None:
    """Why the gate should not let these digests reach `environment` for the release (None:
    it may): the promotion check's words."""
    from shared.errors import DomainError

    release, rows = await get(uow, release_id)
    try:
        domain.check_promotion(release, environment, digests, store.as_history(rows))
    except DomainError as refused:
        return refused.detail
    return None


async def record_gate_deployment(
    uow: ReleaseWork, deployment: Deployment, *, now: datetime
) -> Release:
    """A gate deployment's outcome recorded on its release (the gate checked its promotion
    when it decided)."""
    assert deployment.release_id is not None
    return await deploy(
        uow,
        deployment.release_id,
        None,
        environment=deployment.environment,
        status=deployment.status,
        digests={a["name"]: a["digest"] for a in deployment.artifacts},
        evidence=[],
        log_url=deployment.log_url,
        deployment_id=deployment.id,
        checked=False,
    )


async def add_evidence(
    uow: ReleaseWork,
    release_id: uuid.UUID,
    expected: int,
    *,
    kind: str,
    ref: str,
    environment: str | None,
) -> Release:
    """Add acceptance or test evidence to a release."""
    release = await RELEASES.locked(uow.conn, uow.tenant_id, release_id, expected)
    changed = domain.add_evidence(
        release,
        kind=kind,
        ref=ref,
        environment=environment,
        actor=uow.context.actor,
        now=datetime.now(UTC),
    )
    return await _store(uow, changed, f"{kind} evidence")
