"""Events of change and release management (ISO/IEC 20000-1 8.5.1, 8.5.3): the contract
consumers use. Every event's subject is the change id (`change_id`), unless it says otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.base import EventPayload, event
from shared.events.topics import CHANGE_EVENTS

ChangeTypeName = Literal["standard", "normal", "emergency"]
ChangeStateName = Literal[
    "new", "assess", "authorize", "scheduled", "implement", "review", "closed", "cancelled"
]
# `partial` is what events written before the four outcomes of 8.5.1 said for
# `successful_with_issues`; consumers read both.
OutcomeName = Literal["successful", "successful_with_issues", "failed", "rolled_back", "partial"]
OriginName = Literal["manual", "problem", "deployment", "unauthorized"]


@event("itsm.change.created.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeCreatedV1(EventPayload):
    """A request for change was raised (state `new`)."""

    change_id: str
    number: int
    type: ChangeTypeName
    origin: OriginName
    title: str
    requester: str
    assignment_group: str | None = None
    implementer: str | None = None
    template_id: str | None = None
    ci_ids: list[str] = Field(default_factory=list)
    business_services: list[str] = Field(default_factory=list)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    problem_ids: list[str] = Field(default_factory=list)
    incident_ids: list[str] = Field(default_factory=list)
    problem_request_id: str | None = Field(
        default=None, description="The problem's change request this change answers."
    )
    content_hash: str = Field(description="SHA-256 of the approved content (approvals bind it).")


@event("itsm.change.updated.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeUpdatedV1(EventPayload):
    """Fields of a change were edited: `{field: {"from", "to"}}`. `approvals_voided` when the
    edit changed approved content of an approved change (it goes back to `authorize`)."""

    change_id: str
    changes: dict[str, dict[str, Any]]
    content_hash: str
    approvals_voided: bool = False


@event("itsm.change.transitioned.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeTransitionedV1(EventPayload):
    """A change moved between states; the actor and time are the envelope's. Carries the
    problems it answers, so the problem shows the change's progress."""

    change_id: str
    number: int
    type: ChangeTypeName
    from_state: ChangeStateName
    to_state: ChangeStateName
    outcome: OutcomeName | None = None
    reason: str | None = None
    problem_ids: list[str] = Field(default_factory=list)
    problem_request_id: str | None = None
    content_hash: str


@event("itsm.change.implemented.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeImplementedV1(EventPayload):
    """A change was implemented on CIs (subject: the change id), announced when it leaves
    `implement`.

    The incident service flags incidents on these CIs within a window after `implemented_at`.
    """

    change_id: str
    title: str
    ci_ids: list[str]
    implemented_at: datetime
    outcome: OutcomeName = "successful"


# --- deployment gate and releases (gates) ---

GateResultName = Literal["allowed", "prevented", "awaiting"]
GateSourceName = Literal["api", "github", "argocd", "flux"]


class GateReasonV1(EventPayload):
    """Why the gate decided as it did: a code (`not_approved`, `awaiting_approval`, `blackout`,
    `conflict`, `outside_window`, `change_not_found`, `wrong_cis`, `unauthorized`) and words."""

    code: str
    detail: str
    ci_ids: list[str] = Field(default_factory=list)


@event("itsm.change.gate_decided.v1", topic=CHANGE_EVENTS, source="itsm/change")
class GateDecidedV1(EventPayload):
    """The deployment gate decided on an announced deployment (subject: the deployment id);
    announced again when a poll changes an `awaiting` decision."""

    deployment_id: str
    pipeline: str
    environment: str
    sequence: int
    source: GateSourceName
    result: GateResultName
    reasons: list[GateReasonV1] = Field(default_factory=list)
    change_id: str | None = None
    release_id: str | None = None
    registered: Literal["standard", "unauthorized"] | None = Field(
        default=None, description="Set when the deployment registered its change."
    )
    artifact_digests: list[str] = Field(default_factory=list)
    commit: str | None = None


@event("itsm.change.deployment_recorded.v1", topic=CHANGE_EVENTS, source="itsm/change")
class DeploymentRecordedV1(EventPayload):
    """A deployment's outcome was recorded (subject: the deployment id)."""

    deployment_id: str
    environment: str
    status: Literal["succeeded", "failed", "rolled_back"]
    at: datetime
    log_url: str | None = None
    change_id: str | None = None
    release_id: str | None = None
    source: GateSourceName


ReleaseStateName = Literal[
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


class ReleaseArtifactV1(EventPayload):
    """An artifact of a release: name, version and content digest (`sha256:<hex>`)."""

    name: str
    version: str
    digest: str


@event("itsm.change.release_created.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ReleaseCreatedV1(EventPayload):
    """A release was planned (subject: the release id)."""

    release_id: str
    number: int
    name: str
    environments: list[str]
    change_ids: list[str] = Field(default_factory=list)
    artifacts: list[ReleaseArtifactV1] = Field(default_factory=list)


@event("itsm.change.release_transitioned.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ReleaseTransitionedV1(EventPayload):
    """A release moved between states (subject: the release id)."""

    release_id: str
    number: int
    from_state: ReleaseStateName
    to_state: ReleaseStateName
    reason: str | None = None


@event("itsm.change.release_deployed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ReleaseDeployedV1(EventPayload):
    """A release's deployment to an environment was recorded, with what it deployed (subject:
    the release id); `rolled_back` records a rollback there."""

    release_id: str
    environment: str
    status: Literal["succeeded", "failed", "rolled_back"]
    digests: dict[str, str] = Field(description="Artifact name -> digest deployed.")
    evidence: list[str] = Field(default_factory=list)
    log_url: str | None = None
    deployment_id: str | None = None
