"""The deployment gate's decision (ISO/IEC 20000-1 8.5.3), pure: given what a pipeline
announces, the change it names (if any) and what the approvals and the schedule say about that
change, the gate answers `allowed`, `prevented` with every reason, or `awaiting`.

The decision table (`decide`), reasons gathered together, never the first one only:

- a change named but not found: prevented (`change_not_found`);
- CIs or services announced that the change does not cover: prevented (`wrong_cis`, naming
  every one);
- the change's authorization rejected, or the change cancelled, closed or in review:
  prevented (`not_approved`); still to be authorized (`new`, `assess`, `authorize`, or its
  approvals pending): `awaiting` (`awaiting_approval`), unless something else prevents it;
- now outside the change's planned window: prevented (`outside_window`);
- a blackout covering any affected CI: prevented (`blackout`, naming every CI it covers);
- another conflict the schedule reports: prevented (`conflict`);
- a change registered by the deployment for review (origin `unauthorized`): prevented
  (`unauthorized`);
- a deployment to an environment that is not production and names no change: allowed (the
  gate governs production; the record still keeps it).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from shared.errors import FieldError, InvalidTransition, ValidationFailed

GateResult = Literal["allowed", "prevented", "awaiting"]
Source = Literal["api", "github", "argocd", "flux"]
DeploymentStatus = Literal["announced", "succeeded", "failed", "rolled_back"]
AuthorizationStatus = Literal["not_required", "pending", "approved", "rejected"]

DIGEST: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
# States of a change in which deploying it is what the change is for.
DEPLOYABLE_STATES: Final = frozenset({"scheduled", "implement"})
NOT_YET_AUTHORIZED: Final = frozenset({"new", "assess", "authorize"})
# A recorded outcome may still be corrected once: a success found wrong, rolled back.
STATUS_MOVES: Final[dict[str, frozenset[str]]] = {
    "announced": frozenset({"succeeded", "failed", "rolled_back"}),
    "succeeded": frozenset({"rolled_back"}),
    "failed": frozenset({"rolled_back"}),
    "rolled_back": frozenset(),
}


@dataclass(frozen=True)
class Artifact:
    """What is deployed: a name, a version and its content digest (`sha256:<64 hex>`)."""

    name: str
    version: str
    digest: str


@dataclass(frozen=True)
class Announcement:
    """What a pipeline says it is about to deploy."""

    pipeline: str
    environment: str
    sequence: int
    source: Source = "api"
    services: tuple[str, ...] = ()
    ci_ids: tuple[uuid.UUID, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    commit: str | None = None
    change_id: uuid.UUID | None = None
    release_id: uuid.UUID | None = None

    @property
    def fingerprint(self) -> str:
        """A hash of what was announced: the same (pipeline, environment, sequence) announced
        with other content is another deployment, which the gate refuses."""
        content = {
            "services": sorted(self.services),
            "ci_ids": sorted(str(c) for c in self.ci_ids),
            "artifacts": sorted([a.name, a.version, a.digest] for a in self.artifacts),
            "commit": self.commit,
            "change_id": str(self.change_id) if self.change_id else None,
            "release_id": str(self.release_id) if self.release_id else None,
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Reason:
    """One reason for a decision, with the CIs it concerns (all of them)."""

    code: str
    detail: str
    ci_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleFinding:
    """What the schedule says of the change's window: a blackout or another conflict."""

    kind: str  # "blackout", or the schedule's conflict kind
    detail: str
    ci_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeFacts:
    """The change as the gate sees it, with its authorization and its schedule findings."""

    id: uuid.UUID
    state: str
    origin: str
    affected_cis: tuple[uuid.UUID, ...]
    business_services: tuple[str, ...]
    planned_start: datetime | None
    planned_end: datetime | None
    authorization: AuthorizationStatus
    findings: tuple[ScheduleFinding, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The gate's answer and every reason for it."""

    result: GateResult
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


def check_artifacts(artifacts: Sequence[Artifact]) -> None:
    """Refuse an artifact whose digest is not `sha256:<64 lowercase hex>` (422 naming it)."""
    errors = [
        FieldError(f"artifacts[{i}].digest", "must be sha256:<64 lowercase hex digits>")
        for i, a in enumerate(artifacts)
        if not DIGEST.match(a.digest)
    ]
    if errors:
        raise ValidationFailed(errors)


def decide(
    announcement: Announcement,
    change: ChangeFacts | None,
    *,
    production: bool,
    now: datetime,
    change_missing: bool = False,
) -> Decision:
    """The gate's decision (see the module's table). `change_missing`: the announcement named
    a change that does not exist."""
    if change_missing:
        named = str(announcement.change_id)
        return Decision("prevented", (Reason("change_not_found", f"no change {named}"),))
    if change is None:
        if production:
            # The caller registers a change first; reaching here is a caller's bug.
            raise ValueError("a production deployment is decided against a change")
        return Decision("allowed", ())
    prevented: list[Reason] = []
    waiting: list[Reason] = []
    if change.origin == "unauthorized" and change.state in NOT_YET_AUTHORIZED:
        prevented.append(Reason("unauthorized", "registered as an unauthorized change, for review"))
    outside = [str(c) for c in announcement.ci_ids if c not in change.affected_cis]
    services = [s for s in announcement.services if s not in change.business_services]
    if outside or services:
        what = ", ".join([*outside, *services])
        prevented.append(Reason("wrong_cis", f"the change does not cover {what}", tuple(outside)))
    if change.authorization == "rejected" or change.state in {"review", "closed", "cancelled"}:
        prevented.append(
            Reason(
                "not_approved",
                f"the change is {change.state}, its authorization {change.authorization}",
            )
        )
    elif change.state in NOT_YET_AUTHORIZED or change.authorization == "pending":
        waiting.append(Reason("awaiting_approval", f"the change is in {change.state}"))
    if change.planned_start is not None and change.planned_end is not None:
        if not change.planned_start <= now < change.planned_end:
            prevented.append(
                Reason(
                    "outside_window",
                    f"the change's window is {change.planned_start.isoformat()} to"
                    f" {change.planned_end.isoformat()}",
                )
            )
    elif change.state in DEPLOYABLE_STATES:
        prevented.append(Reason("outside_window", "the change has no planned window"))
    for finding in change.findings:
        code = "blackout" if finding.kind == "blackout" else "conflict"
        prevented.append(Reason(code, finding.detail, finding.ci_ids))
    if prevented:
        return Decision("prevented", tuple(prevented + waiting))
    if waiting:
        return Decision("awaiting", tuple(waiting))
    return Decision("allowed", ())


def check_status_move(current: str, wanted: str) -> None:
    """Refuse a status the deployment cannot take now (409 naming the allowed ones)."""
    allowed = STATUS_MOVES.get(current, frozenset())
    if wanted not in allowed:
        raise InvalidTransition(
            "deployment", current, wanted, tuple(sorted(allowed)), field="status"
        )
