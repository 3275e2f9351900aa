"""Configuration item use cases: each runs in one unit of work (`application/uow.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.config.application import catalogue, membership, validators
from services.config.application.change_control import check_change
from services.config.application.uow import CiRepository, ConfigUnit
from services.config.domain import classes
from services.config.domain.change_control import unauthorized_modification, under_control
from services.config.domain.ci import ConfigurationItem, created, modify, register
from shared.errors import (
    Conflict,
    FieldError,
    NotFound,
    StaleVersion,
    ValidationFailed,
    invalid_field,
)
from shared.events.catalogue import CiClassDefinedV1


@dataclass(frozen=True)
class RegisterCi:
    """Command: register a configuration item."""

    ci_class: str
    name: str
    status: str
    owner_team: str | None
    criticality: int
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    controlled: bool
    # The change (in implement) that authorises the registration.
    change_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ModifyCi:
    """Command: change fields of a CI whose version the caller read."""

    ci_id: uuid.UUID
    expected_version: int
    changes: dict[str, Any]
    reason: str | None
    change_ref: str | None
    # The change (in implement, listing the CI) that authorises the modification.
    change_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DefineClass:
    """Command: define (or redefine) a tenant CI class and its attribute schema."""

    name: str
    description: str
    attribute_schema: dict[str, Any]


def schema_refusal(problems: Iterable[classes.FieldProblem]) -> ValidationFailed:
    """The 422 for attributes or a class schema the rules refuse, each place with its pointer."""
    return ValidationFailed([FieldError(p.field, p.detail, "body", p.pointer) for p in problems])


async def class_schema(cis: CiRepository, name: str) -> dict[str, Any]:
    """The attribute schema of a built-in or tenant class; 422 naming `class` if unknown."""
    if name in classes.BUILTIN_CLASSES:
        return dict(classes.BUILTIN_CLASSES[name])
    defined = await cis.tenant_class(name)
    if defined is None:
        raise invalid_field("class", f"no CI class named {name!r}")
    schema: dict[str, Any] = defined["attribute_schema"]
    return schema


async def _check_attributes(cis: CiRepository, ci_class: str, attributes: dict[str, Any]) -> None:
    schema = await class_schema(cis, ci_class)
    problems = validators.validate_attributes(schema, attributes)
    if problems:
        raise schema_refusal(problems)


async def _claim_external_ids(cis: CiRepository, ci: ConfigurationItem) -> None:
    taken = await cis.claim_external_ids(ci)
    if taken:
        raise Conflict(
            "another configuration item already has these external ids",
            fields=[FieldError(f"external_ids.{s}", "already used") for s in taken],
        )


async def register_ci(uow: ConfigUnit, command: RegisterCi) -> ConfigurationItem:
    """Validate against the class schema, store version 1, announce it."""
    context = uow.context
    async with uow:
        await check_change(uow, command.change_id, None)
        await _check_attributes(uow.cis, command.ci_class, command.attributes)
        ci = register(
            tenant_id=context.tenant_id,
            ci_class=command.ci_class,
            name=command.name,
            status=command.status,
            owner_team=command.owner_team,
            criticality=command.criticality,
            attributes=command.attributes,
            external_ids=command.external_ids,
            controlled=command.controlled,
            actor=context.actor,
            now=datetime.now(UTC),
        )
        await uow.cis.add(ci)
        await _claim_external_ids(uow.cis, ci)
        change_id = command.change_id
        await uow.cis.record_version(
            ci, changed=["created"], reason=None, change_ref=None, source=None, change_id=change_id
        )
        uow.record(str(ci.id), ci.version, [created(ci, change_id=_text(change_id))])
        if ci.ci_class == "business_service":
            await catalogue.announce_business_service(uow, ci)
            # A business service supports itself from the start.
            await membership.refresh(uow, [ci.id])
    return ci


async def modify_ci(uow: ConfigUnit, command: ModifyCi) -> ConfigurationItem:
    """A new version if anything changed; NotFound, StaleVersion, or refused by the rules
    (ValidationFailed, Conflict for a retired CI, an external id another CI has, or a
    `change_id` that does not authorise it). A CI under change control modified without a
    `change_id` is modified and announced as an unauthorized change."""
    context = uow.context
    async with uow:
        current = await uow.cis.get(command.ci_id, for_update=True)
        if current is None:
            raise NotFound("configuration item", str(command.ci_id))
        if current.version != command.expected_version:
            raise StaleVersion("the configuration item", current.version, command.expected_version)
        await check_change(uow, command.change_id, current.id)
        outcome = modify(
            current,
            command.changes,
            actor=context.actor,
            now=datetime.now(UTC),
            reason=command.reason,
            change_ref=command.change_ref,
            change_id=_text(command.change_id),
        )
        if outcome.event is None:
            return current
        ci = outcome.ci
        if "attributes" in outcome.changed:
            await _check_attributes(uow.cis, ci.ci_class, ci.attributes)
        if "external_ids" in outcome.changed:
            await _claim_external_ids(uow.cis, ci)
        await uow.cis.update(ci)
        await uow.cis.record_version(
            ci,
            changed=outcome.changed,
            reason=command.reason,
            change_ref=command.change_ref,
            source=None,
            change_id=command.change_id,
        )
        uow.record(str(ci.id), ci.version, [outcome.event])
        if command.change_id is None and under_control(current, await uow.change_control.control()):
            uow.record(
                str(ci.id), ci.version, [unauthorized_modification(current, ci, outcome.changed)]
            )
        if ci.ci_class == "business_service":
            await catalogue.announce_business_service(uow, ci)
        if ci.status == "retired":
            # It supports nothing now, and passes nothing on to what it depends on.
            await membership.refresh(uow, [ci.id])
    return ci


def _text(change_id: uuid.UUID | None) -> str | None:
    return None if change_id is None else str(change_id)


async def define_class(uow: ConfigUnit, command: DefineClass) -> int:
    """Create or replace a tenant CI class; built-in names are reserved. Returns its version."""
    name = command.name
    if name in classes.BUILTIN_CLASSES:
        raise Conflict(
            f"{name} is a built-in class: define a class of your own that extends it",
            fields=[FieldError("name", "built-in class", "path")],
        )
    try:
        classes.validate_class_schema(command.attribute_schema)
    except classes.ClassSchemaError as exc:
        raise schema_refusal(exc.schema_problems) from None
    async with uow:
        version = await uow.cis.define_class(
            name,
            description=command.description,
            attribute_schema=command.attribute_schema,
            actor=uow.context.actor,
            now=datetime.now(UTC),
        )
        uow.record(
            f"ci-class/{name}",
            version,
            [
                CiClassDefinedV1(
                    name=name,
                    description=command.description,
                    attribute_schema=command.attribute_schema,
                    version=version,
                )
            ],
        )
    return version
