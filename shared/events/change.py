"""Events of change and release management (ISO/IEC 20000-1 8.5.1, 8.5.3): the contract
consumers use. Every event's subject is the change id (`change_id`), unless it says otherwise.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    proposed_outcome: OutcomeName | None = Field(
        default=None, description="Leaving implement: the outcome the evidence proposed."
    )
    outcome_reason: str | None = Field(
        default=None, description="Why the outcome differs from the proposed one."
    )


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


# --- change records: settings, templates, reviews, backouts (rfc) ---


@event("itsm.change.settings_changed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeSettingsChangedV1(EventPayload):
    """A tenant changed its change settings (subject `change-settings`, itsmversion the
    version); carries them in full, as `GET /change-settings` shows them."""

    settings: dict[str, Any]
    version: int = Field(ge=1)


@event("itsm.change.gate_settings_changed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeGateSettingsChangedV1(EventPayload):
    """A tenant changed its deployment gate's settings (subject `gate-settings`, itsmversion the
    version): which environments are production (what the gate guards) and the order releases
    are promoted in. Carries them in full, as `GET /gate-settings` shows them, and what changed
    as `{field: {"from", "to"}}` (from the defaults the first time)."""

    settings: dict[str, Any]
    changes: dict[str, dict[str, Any]]
    version: int = Field(ge=1)


@event("itsm.change.template_defined.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeTemplateDefinedV1(EventPayload):
    """A standard change template was defined or redefined (subject: the template id);
    carries it in full."""

    template_id: str
    name: str
    description: str
    implementation_plan: str
    backout_plan: str
    test_plan: str
    ci_ids: list[str] = Field(default_factory=list)
    ci_classes: list[str] = Field(default_factory=list)
    business_service: str | None = None
    risk_level: Literal["low"] = "low"
    active: bool
    version: int = Field(ge=1)


@event("itsm.change.backout_executed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeBackoutExecutedV1(EventPayload):
    """The backout plan of a change being implemented was executed (evidence: rolled back)."""

    change_id: str
    reason: str


@event("itsm.change.reviewed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeReviewedV1(EventPayload):
    """A change's post-implementation review was recorded (required before closure for
    failed, rolled back, emergency and high-risk changes)."""

    change_id: str
    number: int
    outcome: OutcomeName | None = None
    what_happened: str
    lessons: str
    actions: list[str] = Field(default_factory=list)
    reviewer: str


# --- risk and approvals (cab) ---
# Risk assessments have the change as subject; approval events have the approval step as
# subject (each step keeps its own sequence) and carry the change id; a CAB meeting's event has
# the meeting as subject; rule-set changes have `risk-settings` or `approval-policies`.

RiskLevelName = Literal["low", "medium", "high"]
DecisionKind = Literal["approve", "reject"]


class RiskFactorV1(BaseModel):
    """One factor of a risk score: its input, its contribution in points, and why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    input: Any = None
    contribution: float
    explanation: str


@event("itsm.change.risk_assessed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeRiskAssessedV1(EventPayload):
    """A change's risk was assessed under a rule-set version (replayable from its inputs); the
    change's `risk_level` is `level` (a person's override when `override_reason` is set)."""

    change_id: str
    assessment_id: str
    rule_set_version: int
    inputs: dict[str, Any]
    factors: list[RiskFactorV1]
    score: float
    computed_level: RiskLevelName
    level: RiskLevelName
    override_reason: str | None = None


@event("itsm.change.risk_settings_changed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeRiskSettingsChangedV1(EventPayload):
    """A tenant saved a new risk rule set (weights, thresholds, hops) as `version`."""

    version: int
    rules: dict[str, Any]


@event("itsm.change.approval_policies_changed.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeApprovalPoliciesChangedV1(EventPayload):
    """A tenant saved new approval policies (decision table and groups) as `version`."""

    version: int
    policies: dict[str, Any]


@event("itsm.change.approval_requested.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeApprovalRequestedV1(EventPayload):
    """An approval step is pending: its approvers may decide until `deadline_at`."""

    change_id: str
    step_id: str
    step: str
    round: int
    position: int
    approvers: dict[str, Any]
    quorum: str
    n: int | None = None
    deadline_at: datetime
    content_hash: str


@event("itsm.change.approval_recorded.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeApprovalRecordedV1(EventPayload):
    """A person decided on an approval step, bound to the change's content hash."""

    change_id: str
    step_id: str
    step: str
    approver: str
    decision: DecisionKind
    comment: str
    content_hash: str
    step_outcome: Literal["pending", "approved", "rejected"]
    cab_meeting_id: str | None = None


@event("itsm.change.authorized.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeAuthorizedV1(EventPayload):
    """Every approval step of the change's round completed; the change is scheduled."""

    change_id: str
    round: int
    content_hash: str
    steps: list[str]
    approvers: list[str]
    waited_seconds: float


@event("itsm.change.approval_rejected.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeApprovalRejectedV1(EventPayload):
    """An approval step was rejected; the change went back to `assess` with the comment."""

    change_id: str
    round: int
    step: str
    approver: str
    comment: str
    content_hash: str
    waited_seconds: float


@event("itsm.change.approval_escalated.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeApprovalEscalatedV1(EventPayload):
    """A pending approval step passed its deadline and was escalated; it stays pending (a
    deadline never approves)."""

    change_id: str
    step_id: str
    step: str
    deadline_at: datetime
    escalations: int
    approvers: dict[str, Any]


@event("itsm.change.cab_meeting_scheduled.v1", topic=CHANGE_EVENTS, source="itsm/change")
class CabMeetingScheduledV1(EventPayload):
    """A CAB meeting was planned with its members (subject: the meeting id)."""

    meeting_id: str
    title: str
    starts_at: datetime
    members: list[str]


# --- the change schedule: windows, conflicts, blackout overrides (schedule) ---

WindowKindName = Literal["maintenance", "blackout"]
WindowScopeName = Literal["all", "service", "cis"]
ConflictKindName = Literal[
    "change", "maintenance_window", "blackout", "implementer", "major_incident"
]


@event("itsm.change.window_defined.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeWindowDefinedV1(EventPayload):
    """A maintenance or blackout window was defined or revised (subject: the window id)."""

    window_id: str
    number: int
    name: str
    kind: WindowKindName
    scope: WindowScopeName
    service: str | None = Field(default=None, description="The business service (scope service).")
    ci_ids: list[str] = Field(default_factory=list, description="The CIs (scope cis).")
    start: str = Field(description="Local wall-clock start (ISO 8601, no offset) in time_zone.")
    time_zone: str = Field(description="IANA time zone the start and the RRULE are read in.")
    calendar: str | None = Field(
        default=None, description="The business calendar the time zone was taken from."
    )
    duration_seconds: int
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE value, if recurring.")
    exclusions: list[date] = Field(
        default_factory=list, description="Local dates on which no occurrence starts."
    )
    version: int
    previous_version: int | None = Field(default=None, description="None for a new window.")


@event("itsm.change.window_retired.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeWindowRetiredV1(EventPayload):
    """A window was retired: it no longer applies (subject: the window id)."""

    window_id: str
    number: int
    kind: WindowKindName
    reason: str
    version: int


@event("itsm.change.schedule_feed_token_created.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ScheduleFeedTokenCreatedV1(EventPayload):
    """A user created a calendar feed token: a secret URL a calendar client subscribes to, for
    that user's view of the change schedule (subject: the token id). The secret is never in
    an event."""

    token_id: str
    user_id: str = Field(description="The token's owner: the subject of the caller's token.")
    name: str | None = None
    service: str | None = Field(default=None, description="The feed's business service filter.")
    ci_ids: list[str] = Field(default_factory=list, description="The feed's CI filter.")


@event("itsm.change.schedule_feed_token_revoked.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ScheduleFeedTokenRevokedV1(EventPayload):
    """A calendar feed token was revoked: its URL serves nothing any more (subject: the token
    id)."""

    token_id: str
    user_id: str = Field(description="The token's owner.")
    revoked_by: str = Field(description="The owner, or a change manager of the tenant.")


class ScheduleConflictV1(BaseModel):
    """One conflict of a change's window: its kind, every CI of the change it involves, and the
    other change, window or incident."""

    kind: ConflictKindName
    detail: str
    ci_ids: list[str]
    other_id: str | None = None
    other_reference: str | None = None


@event("itsm.change.conflict_detected.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeConflictDetectedV1(EventPayload):
    """A change's conflicts were computed and differ from the last computed set (an empty list:
    the conflicts are gone)."""

    change_id: str
    planned_start: datetime | None
    planned_end: datetime | None
    hops: int
    conflicts: list[ScheduleConflictV1]
    fingerprint: str = Field(description="SHA-256 of the conflicts, to compare sets.")


class OverriddenBlackoutV1(BaseModel):
    """A blackout a change was scheduled into, and the change's CIs it covers."""

    window_id: str
    name: str
    ci_ids: list[str]


@event("itsm.change.blackout_overridden.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeBlackoutOverriddenV1(EventPayload):
    """A change was scheduled into blackout windows with an emergency override and its reason."""

    change_id: str
    reason: str
    blackouts: list[OverriddenBlackoutV1]


# --- deployment gate and releases (gates) ---

GateResultName = Literal["allowed", "prevented", "awaiting"]
GateSourceName = Literal["api", "github", "argocd", "flux"]


class GateReasonV1(BaseModel):
    """Why the gate decided as it did: a code (`not_approved`, `awaiting_approval`, `blackout`,
    `conflict`, `outside_window`, `change_not_found`, `wrong_cis`, `unauthorized`) and words."""

    model_config = ConfigDict(frozen=True, extra="ignore")

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


class ReleaseArtifactV1(BaseModel):
    """An artifact of a release: name, version and content digest (`sha256:<hex>`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

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
