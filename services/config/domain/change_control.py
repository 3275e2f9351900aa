"""Configuration items under change control (ISO/IEC 20000-1 8.2.6 with 8.5.1): the rules.

- **Which CIs** (`ChangeControl`, `under_control`): a CI is under change control when its own
  `controlled` flag is set, or its class is one the tenant's change-control configuration
  names (`GET/PUT /change-control`).
- **The authorising change** (`check_authorising_change`): a CI write may name the change that
  authorises it (`change_id`). The config service knows changes from its projection of the
  change service's events (`ProjectedChange`); the change must be in `implement` and list the
  CI among its affected CIs (a new CI has no id yet: the change being in `implement` is enough).
- **Unauthorized changes** (`unauthorized_modification`, `unauthorized_drift`): a modification
  of a controlled CI that names no change is recorded (the CMDB keeps what is true) and
  announced as `itsm.config.ci.unauthorized_change_detected.v1`, and so is drift that discovery
  finds on one; the change service opens a change to review it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.config.domain.ci import ConfigurationItem
from shared.errors import Conflict, FieldError, ValidationFailed
from shared.events.catalogue import UnauthorizedChangeDetectedV1

CHANGE_ID = "change_id"
IMPLEMENT = "implement"


@dataclass(frozen=True)
class ChangeControl:
    """The tenant's change-control configuration (version 0: never saved, nothing by class)."""

    classes: frozenset[str] = frozenset()
    version: int = 0


@dataclass(frozen=True)
class ProjectedChange:
    """What the config service knows of a change from the change service's events."""

    id: uuid.UUID
    number: int
    state: str
    affected_cis: frozenset[uuid.UUID]

    @property
    def reference(self) -> str:
        """CHG<number>, as people name it."""
        return f"CHG{self.number}"


def under_control(ci: ConfigurationItem, control: ChangeControl) -> bool:
    """Whether a modification of the CI needs an authorising change."""
    return ci.controlled or ci.ci_class in control.classes


def check_authorising_change(
    change_id: uuid.UUID, change: ProjectedChange | None, ci_id: uuid.UUID | None
) -> None:
    """Refuse a `change_id` that does not authorise a write of this CI (`ci_id` None: a new CI):
    422 when no such change is known, 409 when it is not in `implement` or does not list it."""
    if change is None:
        detail = f"no change {change_id} is known to the configuration service"
        raise ValidationFailed([FieldError(CHANGE_ID, detail)], detail)
    if change.state != IMPLEMENT:
        detail = (
            f"change {change.reference} is in {change.state}: a CI is written under a change"
            " only while it is in implement"
        )
        raise Conflict(detail, fields=[FieldError(CHANGE_ID, detail)])
    if ci_id is not None and ci_id not in change.affected_cis:
        detail = f"change {change.reference} does not list this configuration item as affected"
        raise Conflict(detail, fields=[FieldError(CHANGE_ID, detail)])


def field_changes(
    before: ConfigurationItem, after: ConfigurationItem, changed: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """`{field: {"from", "to"}}` of a modification, JSON-ready."""
    before_state = before.state().model_dump(mode="json")
    after_state = after.state().model_dump(mode="json")
    return {f: {"from": before_state.get(f), "to": after_state.get(f)} for f in changed}


def unauthorized_modification(
    before: ConfigurationItem, after: ConfigurationItem, changed: Iterable[str]
) -> UnauthorizedChangeDetectedV1:
    """The announcement of a controlled CI modified with no authorising change."""
    return UnauthorizedChangeDetectedV1(
        ci=after.state(),
        found_by="ci_modified",
        changes=field_changes(before, after, changed),
        by=after.updated_by,
    )


def unauthorized_drift(
    ci: ConfigurationItem,
    differences: Mapping[str, dict[str, Any]],
    *,
    source: str,
    import_id: str,
) -> UnauthorizedChangeDetectedV1:
    """The announcement of drift discovery found on a controlled CI (nothing was applied)."""
    return UnauthorizedChangeDetectedV1(
        ci=ci.state(),
        found_by="drift",
        changes=dict(differences),
        by=f"discovery:{source}",
        import_id=import_id,
    )


def classes_of(names: Iterable[str]) -> list[str]:
    """The configuration's classes: each once, sorted."""
    return sorted(set(names))
