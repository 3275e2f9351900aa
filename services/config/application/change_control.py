"""Change control use cases: the tenant's configuration (`GET/PUT /change-control`), the check
of a CI write's authorising change, and the announcement of unauthorized modifications (the
rules are in `domain/change_control.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from services.config.application.uow import ConfigUnit
from services.config.domain import classes
from services.config.domain.change_control import (
    ChangeControl,
    check_authorising_change,
    classes_of,
)
from shared.errors import FieldError, StaleVersion, ValidationFailed
from shared.events.catalogue import ChangeControlDefinedV1

SUBJECT = "change-control"


async def check_change(
    uow: ConfigUnit, change_id: uuid.UUID | None, ci_id: uuid.UUID | None
) -> None:
    """Refuse a `change_id` that does not authorise writing this CI (`ci_id` None: a new one);
    no `change_id` is no check."""
    if change_id is not None:
        check_authorising_change(change_id, await uow.change_control.change(change_id), ci_id)


async def read_control(uow: ConfigUnit) -> ChangeControl:
    """The tenant's change-control configuration (version 0 when never saved)."""
    async with uow:
        return await uow.change_control.control()


async def replace_control(
    uow: ConfigUnit, names: Sequence[str], *, expected_version: int
) -> ChangeControl:
    """Replace the classes under change control if the caller read the current version
    (`StaleVersion` otherwise); each must be a built-in or tenant class (422 naming `classes`).
    Announced as `itsm.config.change_control.defined.v1`."""
    wanted = classes_of(names)
    async with uow:
        current = await uow.change_control.control(lock=True)
        if current.version != expected_version:
            raise StaleVersion(
                "the change-control configuration", current.version, expected_version
            )
        unknown = [
            n
            for n in wanted
            if n not in classes.BUILTIN_CLASSES and await uow.cis.tenant_class(n) is None
        ]
        if unknown:
            raise ValidationFailed(
                [FieldError("classes", f"no CI class named {n!r}") for n in unknown]
            )
        version = current.version + 1
        await uow.change_control.save_control(
            wanted, version=version, actor=uow.context.actor, now=datetime.now(UTC)
        )
        uow.record(SUBJECT, version, [ChangeControlDefinedV1(classes=wanted, version=version)])
    return ChangeControl(frozenset(wanted), version)
