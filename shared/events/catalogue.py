"""The event catalogue: one pydantic model per event type, and the registry from type to model."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import TYPE_RE


class EventPayload(BaseModel):
    """Base of every payload; unknown fields are ignored so additive changes keep the version."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True)
class EventSpec:
    """What the catalogue knows of one event type."""

    type: str
    model: builtins.type[EventPayload]
    topic: str
    source: str


CATALOGUE: dict[str, EventSpec] = {}
_BY_MODEL: dict[type[EventPayload], EventSpec] = {}

P = TypeVar("P", bound=type[EventPayload])


def event(type_name: str, *, topic: str, source: str) -> Callable[[P], P]:
    """Register a payload model under its CloudEvents type."""

    def register(model: P) -> P:
        if not TYPE_RE.match(type_name):
            raise ValueError(f"event type {type_name!r} does not follow itsm.<domain>.<event>.vN")
        if type_name in CATALOGUE:
            raise ValueError(f"event type {type_name!r} is registered twice")
        spec = EventSpec(type=type_name, model=model, topic=topic, source=source)
        CATALOGUE[type_name] = spec
        _BY_MODEL[model] = spec
        return model

    return register


def spec_for(type_name: str) -> EventSpec | None:
    """The spec of a type, or None when the catalogue does not know it."""
    return CATALOGUE.get(type_name)


def spec_of(payload: EventPayload) -> EventSpec:
    """The spec of a payload instance; every payload class must be registered."""
    try:
        return _BY_MODEL[type(payload)]
    except KeyError:
        raise LookupError(f"{type(payload).__name__} is not in the event catalogue") from None


# --- Topics ---------------------------------------------------------------------------------

INCIDENT_EVENTS = "itsm.incident.events"
CHANGE_EVENTS = "itsm.change.events"
CONFIG_EVENTS = "itsm.config.events"
# Compacted: every replica of every service reads it from the beginning at start-up.
AUTH_REVOCATIONS = "itsm.auth.revocations"

Impact = Literal[1, 2, 3]
Urgency = Literal[1, 2, 3]


# --- Incident management (ISO/IEC 20000-1 8.6.1) ----------------------------------------------


@event("itsm.incident.created.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class IncidentCreatedV1(EventPayload):
    """An incident was logged."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=20_000)
    impact: Impact
    urgency: Urgency
    priority: int = Field(ge=1, le=5)
    state: Literal["new"]


# --- Configuration management (ISO/IEC 20000-1 8.2.6) -----------------------------------------

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


@event("itsm.config.ci.updated.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiUpdatedV1(EventPayload):
    """A configuration item changed: its full new state and the fields that changed."""

    ci: CiStateV1
    changed: list[str]
    reason: str | None = None
    change_ref: str | None = None
    source: str | None = None


@event("itsm.config.ci.retired.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiRetiredV1(EventPayload):
    """A configuration item was retired (its last state)."""

    ci: CiStateV1
    reason: str | None = None
    change_ref: str | None = None


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


# --- Access control (tenant administration, published by the config service) ----------------

TOKEN_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # noqa: S105 - a pattern, not a secret


@event("itsm.config.token.revoked.v1", topic=AUTH_REVOCATIONS, source="itsm/config")
class TokenRevokedV1(EventPayload):
    """A tenant administrator revoked a token (by its `jti`) for their tenant.

    Every service refuses the token for that tenant from the moment it reads this event.
    The subject (and so the Kafka key of the compacted topic) is `<tenant>/<token id>`.
    """

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: datetime | None = Field(
        default=None, description="When the token expires anyway; the entry may be forgotten then."
    )


def revocation_subject(tenant_id: str, token_id: str) -> str:
    """The aggregate id (and Kafka key) of one tenant's revocation of one token."""
    return f"{tenant_id}/{token_id}"
