"""Releases (ISO/IEC 20000-1 8.5.3), pure: a release groups changes and artifacts (name,
version, digest) for target environments in a configured order (e.g. test -> staging ->
production), and records each deployment to an environment with its status and evidence.

- **States** (`RELEASE`): planned -> building -> testing -> deploying -> deployed -> closed,
  or failed / rolled_back / cancelled (each of these three needs a reason).
- **Promotion by digest** (`check_promotion`): an artifact reaches an environment only with
  the digest that succeeded in the environment before it; another digest, or none succeeded
  there yet, is a 409 naming the artifact and the environment.
- **Rollbacks** are deployments of their own (status `rolled_back`), kept beside the others.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from shared.errors import Conflict, FieldError, ValidationFailed
from shared.events.catalogue import (
    EventPayload,
    ReleaseArtifactV1,
    ReleaseCreatedV1,
    ReleaseDeployedV1,
    ReleaseTransitionedV1,
)
from shared.records.record import Changed, VersionedRecord, apply_change
from shared.records.record import transition as move
from shared.records.workflow import StateMachine, on_entry

ReleaseState = Literal[
    "planned",
    "building",
    "testing",
    "deploying",
    "deployed",
    "closed",
    "failed",
    "rolled_back",
    "cancelled",
]
ReleaseDeploymentStatus = Literal["succeeded", "failed", "rolled_back"]
DIGEST: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
EVIDENCE: Final = re.compile(r"^(https://\S+|sha256:[0-9a-f]{64})$")

_TRANSITIONS: Final[dict[ReleaseState, frozenset[ReleaseState]]] = {
    "planned": frozenset({"building", "cancelled"}),
    "building": frozenset({"testing", "failed", "cancelled"}),
    "testing": frozenset({"deploying", "failed", "cancelled"}),
    "deploying": frozenset({"deployed", "failed", "rolled_back"}),
    "deployed": frozenset({"closed", "rolled_back"}),
    "failed": frozenset({"building", "closed"}),
    "rolled_back": frozenset({"building", "closed"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}
RELEASE: Final = StateMachine[ReleaseState](
    "release",
    _TRANSITIONS,
    on_entry(
        _TRANSITIONS, {"failed": ("reason",), "rolled_back": ("reason",), "cancelled": ("reason",)}
    ),
)
# States in which deployments of the release are recorded.
DEPLOYING_STATES: Final = frozenset({"building", "testing", "deploying", "deployed"})


@dataclass(frozen=True)
class Release(VersionedRecord):
    """A release as stored (REL<number>)."""

    PREFIX: ClassVar[str] = "REL"

    number: int
    name: str
    environments: tuple[str, ...]
    changes: tuple[uuid.UUID, ...] = ()
    # [{"name", "version", "digest"}]
    artifacts: list[dict[str, str]] = field(default_factory=list)
    # [{"kind": acceptance|test, "ref", "environment", "at", "by"}]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None

    def digest_of(self, name: str) -> str | None:
        """The release's digest of an artifact, or None when it has no such artifact."""
        return next((a["digest"] for a in self.artifacts if a["name"] == name), None)


@dataclass(frozen=True)
class ReleaseChange(Changed[Release]):
    """A new version of a release, what changed, and its events."""


@dataclass(frozen=True)
class EnvironmentDeployment:
    """One recorded deployment of a release to an environment."""

    environment: str
    status: str
    digests: Mapping[str, str]


def _check_artifacts(artifacts: Sequence[Mapping[str, str]]) -> None:
    errors = [
        FieldError(f"artifacts[{i}].digest", "must be sha256:<64 lowercase hex digits>")
        for i, a in enumerate(artifacts)
        if not DIGEST.match(a["digest"])
    ]
    names = [a["name"] for a in artifacts]
    errors += [
        FieldError(f"artifacts[{i}].name", "named twice")
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    if errors:
        raise ValidationFailed(errors)


def plan_release(
    *,
    tenant_id: str,
    number: int,
    name: str,
    environments: Sequence[str],
    changes: Sequence[uuid.UUID],
    artifacts: Sequence[Mapping[str, str]],
    actor: str,
    now: datetime,
) -> tuple[Release, list[EventPayload]]:
    """Version 1 of a release in `planned`, and the event announcing it."""
    if not environments:
        raise ValidationFailed([FieldError("environments", "a release needs an environment")])
    if len(set(environments)) != len(environments):
        raise ValidationFailed([FieldError("environments", "an environment is named twice")])
    _check_artifacts(artifacts)
    release = Release.first(
        tenant_id=tenant_id,
        state="planned",
        actor=actor,
        now=now,
        number=number,
        name=name,
        environments=tuple(environments),
        changes=tuple(dict.fromkeys(changes)),
        artifacts=[dict(a) for a in artifacts],
    )
    event = ReleaseCreatedV1(
        release_id=str(release.id),
        number=number,
        name=name,
        environments=list(release.environments),
        change_ids=[str(c) for c in release.changes],
        artifacts=[ReleaseArtifactV1(**a) for a in release.artifacts],
    )
    return release, [event]


def transition(
    release: Release, wanted: str, *, actor: str, now: datetime, reason: str | None = None
) -> ReleaseChange:
    """The next version in state `wanted` (409 naming the allowed moves; 422 without a
    reason where the move needs one)."""
    needs_reason = wanted in ("failed", "rolled_back", "cancelled")
    after, changes = move(
        release,
        RELEASE,
        wanted,
        actor=actor,
        now=now,
        details={"reason": reason},
        values={"reason": reason} if needs_reason else {},
    )
    event = ReleaseTransitionedV1(
        release_id=str(release.id),
        number=release.number,
        from_state=release.state,
        to_state=after.state,
        reason=reason,
    )
    return ReleaseChange(after, changes, [event])


def check_promotion(
    release: Release,
    environment: str,
    digests: Mapping[str, str],
    history: Sequence[EnvironmentDeployment],
) -> None:
    """Refuse a deployment of the release to `environment` whose artifacts are not the
    release's, or (beyond the first environment) not the digests that succeeded last in the
    environment before it: 422 for an unknown environment or artifact, 409 naming the artifact
    and the environment otherwise."""
    if environment not in release.environments:
        raise ValidationFailed(
            [
                FieldError(
                    "environment",
                    f"not one of the release's: {', '.join(release.environments)}",
                )
            ]
        )
    if not digests:
        raise ValidationFailed([FieldError("digests", "name the artifacts deployed")])
    unknown = [name for name in digests if release.digest_of(name) is None]
    if unknown:
        raise ValidationFailed(
            [FieldError(f"digests.{name}", "not an artifact of the release") for name in unknown]
        )
    for name, digest in digests.items():
        if digest != release.digest_of(name):
            raise Conflict(
                f"{name} {digest} is not the release's digest {release.digest_of(name)}",
                fields=[FieldError(f"digests.{name}", "not the release's digest")],
            )
    position = release.environments.index(environment)
    if position == 0:
        return
    before = release.environments[position - 1]
    succeeded: dict[str, str] = {}
    for deployed in history:
        if deployed.environment != before:
            continue
        for name, digest in deployed.digests.items():
            if deployed.status == "succeeded":
                succeeded[name] = digest
            elif deployed.status == "rolled_back" and succeeded.get(name) == digest:
                del succeeded[name]
    for name, digest in digests.items():
        if succeeded.get(name) != digest:
            found = succeeded.get(name)
            why = f"{before} last succeeded with {found}" if found else f"not succeeded in {before}"
            raise Conflict(
                f"{name} {digest} cannot go to {environment}: {why}",
                fields=[
                    FieldError(
                        f"digests.{name}",
                        f"must first succeed in {before} (artifact {name}, environment"
                        f" {environment})",
                    )
                ],
                extensions={"artifact": name, "environment": environment, "previous": before},
            )


def record_deployment(
    release: Release,
    *,
    environment: str,
    status: str,
    digests: Mapping[str, str],
    evidence: Sequence[str],
    log_url: str | None,
    deployment_id: uuid.UUID | None,
    history: Sequence[EnvironmentDeployment],
    actor: str,
    now: datetime,
    checked: bool = True,
) -> ReleaseChange:
    """The release's next version with a deployment to `environment` recorded. A deployment
    that succeeded or failed is checked for promotion (`check_promotion`) unless `checked` is
    False (the gate already decided on it); a rollback is recorded as it happened."""
    if release.state not in DEPLOYING_STATES:
        raise Conflict(
            f"a release in {release.state} is not deployed",
            fields=[FieldError("state", f"deployments are recorded in {sorted(DEPLOYING_STATES)}")],
        )
    bad = [e for e in evidence if not EVIDENCE.match(e)]
    if bad:
        raise ValidationFailed(
            [FieldError("evidence", "links (https://...) or attachments' hashes (sha256:<hex>)")]
        )
    if status != "rolled_back" and checked:
        check_promotion(release, environment, digests, history)
    elif environment not in release.environments:
        raise ValidationFailed([FieldError("environment", "not one of the release's")])
    after, _ = apply_change(release, {}, actor=actor, now=now)
    changes = {
        "deployments": {
            "from": None,
            "to": {"environment": environment, "status": status, "digests": dict(digests)},
        }
    }
    event = ReleaseDeployedV1(
        release_id=str(release.id),
        environment=environment,
        status=status,
        digests=dict(digests),
        evidence=list(evidence),
        log_url=log_url,
        deployment_id=str(deployment_id) if deployment_id else None,
    )
    return ReleaseChange(after, changes, [event])


def add_evidence(
    release: Release,
    *,
    kind: str,
    ref: str,
    environment: str | None,
    actor: str,
    now: datetime,
) -> ReleaseChange:
    """The next version with acceptance or test evidence (a link or a hash) added."""
    if not EVIDENCE.match(ref):
        raise ValidationFailed(
            [FieldError("ref", "a link (https://...) or an attachment's hash (sha256:<hex>)")]
        )
    if environment is not None and environment not in release.environments:
        raise ValidationFailed([FieldError("environment", "not one of the release's")])
    item = {
        "kind": kind,
        "ref": ref,
        "environment": environment,
        "at": now.isoformat(),
        "by": actor,
    }
    after, changes = apply_change(
        release, {"evidence": [*release.evidence, item]}, actor=actor, now=now
    )
    return ReleaseChange(after, changes, [])
