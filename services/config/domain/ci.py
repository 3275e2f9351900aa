"""The configuration item aggregate: registration, modification, retirement."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.errors import Conflict, FieldError, ValidationFailed
from shared.events.catalogue import CiCreatedV1, CiRetiredV1, CiStateV1, CiUpdatedV1
from shared.ids import new_id

# Fields a modification may change; the class of a CI never changes (register a new CI instead).
EDITABLE = (
    "name",
    "status",
    "owner_team",
    "criticality",
    "attributes",
    "external_ids",
    "controlled",
)


def _refused(field: str, detail: str) -> ValidationFailed:
    """A modification the rules of configuration management refuse, naming the culprit."""
    return ValidationFailed([FieldError(field, detail)], detail)


@dataclass(frozen=True)
class ConfigurationItem:
    """A CI as the service stores it."""

    id: uuid.UUID
    tenant_id: str
    ci_class: str
    name: str
    status: str
    owner_team: str | None
    criticality: int
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    controlled: bool
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str

    def state(self) -> CiStateV1:
        """The full state, as events and the history carry it."""
        return CiStateV1(
            id=str(self.id),
            ci_class=self.ci_class,
            name=self.name,
            status=self.status,
            owner_team=self.owner_team,
            criticality=self.criticality,
            attributes=self.attributes,
            external_ids=self.external_ids,
            controlled=self.controlled,
            version=self.version,
            updated_at=self.updated_at,
            updated_by=self.updated_by,
        )


def register(
    *,
    tenant_id: str,
    ci_class: str,
    name: str,
    status: str,
    owner_team: str | None,
    criticality: int,
    attributes: dict[str, Any],
    external_ids: dict[str, str],
    controlled: bool,
    actor: str,
    now: datetime,
) -> ConfigurationItem:
    """A new CI at version 1 (`created` gives the event that announces it)."""
    return ConfigurationItem(
        id=new_id(),
        tenant_id=tenant_id,
        ci_class=ci_class,
        name=name,
        status=status,
        owner_team=owner_team,
        criticality=criticality,
        attributes=attributes,
        external_ids=external_ids,
        controlled=controlled,
        version=1,
        created_at=now,
        updated_at=now,
        updated_by=actor,
    )


def created(
    ci: ConfigurationItem, source: str | None = None, change_id: str | None = None
) -> CiCreatedV1:
    """The event that announces a newly registered CI (`source`: the discovery source;
    `change_id`: the change that authorised it)."""
    return CiCreatedV1(ci=ci.state(), source=source, change_id=change_id)


@dataclass(frozen=True)
class Modification:
    """The outcome of a modification: the new CI, what changed, and the event (None: no-op)."""

    ci: ConfigurationItem
    changed: list[str]
    event: CiUpdatedV1 | CiRetiredV1 | None


def modify(
    ci: ConfigurationItem,
    changes: Mapping[str, Any],
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    change_ref: str | None = None,
    source: str | None = None,
    change_id: str | None = None,
) -> Modification:
    """Apply changes as a new version; the same values again change nothing (no new version).

    A retired CI does not change at all (Conflict naming `status`). `change_id` is the change
    that authorises it, checked by the caller (`domain/change_control.py`); a controlled CI
    modified without one is the caller's to announce as unauthorized.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise _refused(sorted(unknown)[0], "this field cannot be changed")
    changed = [f for f in EDITABLE if f in changes and changes[f] != getattr(ci, f)]
    if not changed:
        return Modification(ci, [], None)
    if ci.status == "retired":
        detail = "a retired configuration item cannot be modified"
        raise Conflict(detail, fields=[FieldError("status", detail)])
    new = replace(
        ci,
        **{f: changes[f] for f in changed},
        version=ci.version + 1,
        updated_at=now,
        updated_by=actor,
    )
    if new.status == "retired":
        return Modification(
            new,
            changed,
            CiRetiredV1(ci=new.state(), reason=reason, change_ref=change_ref, change_id=change_id),
        )
    event = CiUpdatedV1(
        ci=new.state(),
        changed=changed,
        reason=reason,
        change_ref=change_ref,
        source=source,
        change_id=change_id,
    )
    return Modification(new, changed, event)
