"""Events of configuration management (ISO/IEC 20000-1 8.2.6): CIs, relationships, classes,
business services, calendars, SLA policies, drift, imports and baselines."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.calendars import CalendarSpec
from shared.events.base import EventPayload, event
from shared.events.topics import CONFIG_EVENTS

CiStatus = Literal["planned", "active", "maintenance", "retired"]


class CiStateV1(BaseModel):
    """A configuration item in full, as every CI event carries it (consumers never call back)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    ci_class: str
    name: str
    status: CiStatus
    owner_team: str | None
    criticality: int = Field(ge=1, le=4)
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    controlled: bool
    version: int = Field(ge=1)
    updated_at: datetime
    updated_by: str


@event("itsm.config.ci.created.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiCreatedV1(EventPayload):
    """A configuration item was registered."""

    ci: CiStateV1
    source: str | None = Field(default=None, description="Discovery source, when imported.")
    change_id: str | None = Field(
        default=None, description="The change (in `implement`) that authorised the write."
    )


@event("itsm.config.ci.updated.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiUpdatedV1(EventPayload):
    """A configuration item changed: its full new state and the fields that changed."""

    ci: CiStateV1
    changed: list[str]
    reason: str | None = None
    change_ref: str | None = None
    source: str | None = None
    change_id: str | None = Field(
        default=None, description="The change (in `implement`) that authorised the write."
    )


@event("itsm.config.ci.retired.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiRetiredV1(EventPayload):
    """A configuration item was retired (its last state)."""

    ci: CiStateV1
    reason: str | None = None
    change_ref: str | None = None
    change_id: str | None = Field(
        default=None, description="The change (in `implement`) that authorised the write."
    )


RelationshipType = Literal[
    "depends_on", "runs_on", "hosted_on", "connects_to", "part_of", "provides"
]


class RelationshipV1(BaseModel):
    """A typed, directed relationship between two CIs (`source` <type> `target`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    type: RelationshipType
    source_id: str
    target_id: str


@event("itsm.config.relationship.added.v1", topic=CONFIG_EVENTS, source="itsm/config")
class RelationshipAddedV1(EventPayload):
    """A relationship was added (subject: the relationship id)."""

    relationship: RelationshipV1


@event("itsm.config.relationship.removed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class RelationshipRemovedV1(EventPayload):
    """A relationship was removed (subject: the relationship id)."""

    relationship: RelationshipV1
    reason: str | None = None


@event("itsm.config.ci_class.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiClassDefinedV1(EventPayload):
    """A tenant defined (or redefined) a CI class and its attribute schema."""

    name: str
    description: str
    attribute_schema: dict[str, Any]
    version: int = Field(ge=1)


@event("itsm.config.service_membership.changed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class ServiceMembershipChangedV1(EventPayload):
    """The set of business services a CI supports changed (a derived fact; subject: the CI id).

    A CI supports every business service that depends on it, directly or through other CIs
    (retired CIs support nothing and pass nothing on); a business service supports itself.
    Consumers keep `ci_id -> services` as a projection instead of walking the graph.
    """

    ci_id: str
    services: list[str] = Field(description="Business service CI ids, sorted.")
    previous: list[str] = Field(description="The set before this change, sorted.")
    sequence: int = Field(ge=1, description="Per CI, increases with every change of the set.")


@event("itsm.config.business_service.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class BusinessServiceDefinedV1(EventPayload):
    """A business service was registered or its catalogue entry changed (subject: its CI id)."""

    id: str
    name: str
    status: CiStatus
    criticality: int = Field(ge=1, le=4)
    owner: str | None = None
    customer: str | None = None
    availability_target: float | None = None
    sla_policy: str | None = Field(default=None, description="The SLA policy that covers it.")
    version: int = Field(ge=1)


class CalendarV1(CalendarSpec):
    """A calendar as events carry it: the stored spec, tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class SlaTargetV1(BaseModel):
    """Response and resolution targets for one priority, in business seconds."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    response_seconds: int = Field(gt=0)
    resolution_seconds: int = Field(gt=0)


@event("itsm.config.calendar.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CalendarDefinedV1(EventPayload):
    """A business-hours calendar was defined or redefined (subject: `calendar/<name>`)."""

    name: str
    description: str = ""
    calendar: CalendarV1
    version: int = Field(ge=1)


@event("itsm.config.sla_policy.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class SlaPolicyDefinedV1(EventPayload):
    """An SLA policy was defined or redefined (subject: `sla-policy/<name>`).

    It carries its calendar in full, so a consumer can start clocks from this event alone.
    """

    name: str
    description: str = ""
    targets: dict[Literal["P1", "P2", "P3", "P4", "P5"], SlaTargetV1]
    calendar_name: str
    calendar: CalendarV1
    pause_on: list[str] = Field(description="On-hold reasons that pause the clocks.")
    warning_threshold: float = Field(gt=0, lt=1)
    services: list[str] = Field(description="Business service CI ids the policy covers.")
    default: bool = Field(description="Whether it applies to work that names no covered service.")
    version: int = Field(ge=1)


@event("itsm.config.ci.drift_detected.v1", topic=CONFIG_EVENTS, source="itsm/config")
class DriftDetectedV1(EventPayload):
    """Discovery found a controlled CI different from its record; nothing was applied.

    An unauthorised change until a change explains it (subject: the CI id).
    """

    ci: CiStateV1
    source: str
    import_id: str
    differences: dict[str, dict[str, Any]] = Field(
        description="Per field: `recorded` (the CMDB) and `discovered` (the source)."
    )


@event("itsm.config.import.completed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class ImportCompletedV1(EventPayload):
    """A discovery import finished (subject: `import/<id>`)."""

    import_id: str
    source: str
    status: Literal["completed", "failed"]
    rows: int = Field(ge=0)
    outcomes: dict[str, int] = Field(
        description="Rows per outcome: created, updated, unchanged, drift, rejected."
    )
    started_at: datetime
    finished_at: datetime
    error: str | None = None


@event("itsm.config.baseline.created.v1", topic=CONFIG_EVENTS, source="itsm/config")
class BaselineCreatedV1(EventPayload):
    """A configuration baseline was named (subject: `baseline/<name>`)."""

    name: str
    description: str = ""
    at: datetime
    cis: int = Field(ge=0, description="CIs (not retired) in the baseline.")
    relationships: int = Field(ge=0)


# --- configuration items under change control (control, issue 19) ---

FoundBy = Literal["ci_modified", "drift"]


@event("itsm.config.change_control.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class ChangeControlDefinedV1(EventPayload):
    """The tenant's change-control configuration was replaced (subject: `change-control`)."""

    classes: list[str] = Field(description="CI classes whose every CI is under change control.")
    version: int = Field(ge=1)


@event("itsm.config.ci.unauthorized_change_detected.v1", topic=CONFIG_EVENTS, source="itsm/config")
class UnauthorizedChangeDetectedV1(EventPayload):
    """A CI under change control was modified, or found drifted by discovery, with no change
    authorising it (subject: the CI id). The change service opens a change to review it."""

    ci: CiStateV1 = Field(description="The CI as recorded after the modification (or as found).")
    found_by: FoundBy = Field(
        description="`ci_modified`: a write without `change_id`; `drift`: a discovery import."
    )
    changes: dict[str, dict[str, Any]] = Field(
        description="Per field what changed: `from`/`to` (ci_modified), `recorded`/`discovered`"
        " (drift)."
    )
    by: str = Field(description="Who made it: the writer, or the discovery source.")
    import_id: str | None = Field(default=None, description="The import that found the drift.")
