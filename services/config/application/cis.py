"""Configuration item use cases: each runs in one tenant transaction with its outbox events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.config.adapters import cis as repository
from services.config.application import catalogue, membership
from services.config.domain import classes
from services.config.domain.ci import CiRuleError, ConfigurationItem, created, modify, register
from shared import outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import CiClassDefinedV1, EventPayload
from shared.http.etags import stale_version
from shared.http.problems import Problem, invalid, not_found


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


@dataclass(frozen=True)
class ModifyCi:
    """Command: change fields of a CI whose version the caller read."""

    ci_id: uuid.UUID
    expected_version: int
    changes: dict[str, Any]
    reason: str | None
    change_ref: str | None


async def class_schema(conn: Connection, tenant_id: str, name: str) -> dict[str, Any]:
    """The attribute schema of a built-in or tenant class; 422 naming `class` if unknown."""
    if name in classes.BUILTIN_CLASSES:
        return dict(classes.BUILTIN_CLASSES[name])
    defined = await repository.tenant_class(conn, tenant_id, name)
    if defined is None:
        raise invalid([{"in": "body", "field": "class", "detail": f"no CI class named {name!r}"}])
    schema: dict[str, Any] = defined["attribute_schema"]
    return schema


async def _check_attributes(
    conn: Connection, tenant_id: str, ci_class: str, attributes: dict[str, Any]
) -> None:
    schema = await class_schema(conn, tenant_id, ci_class)
    problems = classes.validate_attributes(schema, attributes)
    if problems:
        raise invalid(classes.problem_errors(problems))


async def _claim_external_ids(conn: Connection, ci: ConfigurationItem) -> None:
    taken = await repository.claim_external_ids(conn, ci.tenant_id, ci.id, ci.external_ids)
    if taken:
        raise Problem(
            409,
            "Conflict",
            "another configuration item already has these external ids",
            errors=[
                {"in": "body", "field": f"external_ids.{s}", "detail": "already used"}
                for s in taken
            ],
        )


async def _announce(
    conn: Connection, ci: ConfigurationItem, event: EventPayload, context: RequestContext
) -> None:
    await outbox.append(
        conn,
        event,
        subject=str(ci.id),
        tenant_id=ci.tenant_id,
        sequence=ci.version,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )


async def register_ci(
    pool: asyncpg.Pool, command: RegisterCi, context: RequestContext
) -> ConfigurationItem:
    """Validate against the class schema, store version 1, announce it."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        await _check_attributes(conn, context.tenant_id, command.ci_class, command.attributes)
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
        event = created(ci)
        await repository.insert(conn, ci)
        await _claim_external_ids(conn, ci)
        await repository.record_version(
            conn, ci, changed=["created"], reason=None, change_ref=None, source=None
        )
        await _announce(conn, ci, event, context)
        if ci.ci_class == "business_service":
            await catalogue.announce_business_service(
                conn, ci, actor=context.actor, correlation_id=context.correlation_id
            )
            # A business service supports itself from the start.
            await _refresh_membership(conn, ci, context)
    return ci


async def _refresh_membership(
    conn: Connection, ci: ConfigurationItem, context: RequestContext
) -> None:
    await membership.refresh(
        conn, ci.tenant_id, [ci.id], actor=context.actor, correlation_id=context.correlation_id
    )


async def modify_ci(
    pool: asyncpg.Pool, command: ModifyCi, context: RequestContext
) -> ConfigurationItem:
    """A new version if anything changed; 404 unknown, 412 stale, 422/409 refused by the rules."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        current = await repository.get(conn, context.tenant_id, command.ci_id, for_update=True)
        if current is None:
            raise not_found("configuration item", str(command.ci_id))
        if current.version != command.expected_version:
            raise stale_version("the configuration item", current.version, command.expected_version)
        try:
            outcome = modify(
                current,
                command.changes,
                actor=context.actor,
                now=datetime.now(UTC),
                reason=command.reason,
                change_ref=command.change_ref,
            )
        except CiRuleError as exc:
            status = 409 if exc.field == "status" else 422
            title = "Conflict" if status == 409 else "Request validation failed"
            raise Problem(
                status,
                title,
                exc.detail,
                errors=[{"in": "body", "field": exc.field, "detail": exc.detail}],
            ) from None
        if outcome.event is None:
            return current
        ci = outcome.ci
        if "attributes" in outcome.changed:
            await _check_attributes(conn, ci.tenant_id, ci.ci_class, ci.attributes)
        if "external_ids" in outcome.changed:
            await _claim_external_ids(conn, ci)
        await repository.update(conn, ci)
        await repository.record_version(
            conn,
            ci,
            changed=outcome.changed,
            reason=command.reason,
            change_ref=command.change_ref,
            source=None,
        )
        await _announce(conn, ci, outcome.event, context)
        if ci.ci_class == "business_service":
            await catalogue.announce_business_service(
                conn, ci, actor=context.actor, correlation_id=context.correlation_id
            )
        if ci.status == "retired":
            # It supports nothing now, and passes nothing on to what it depends on.
            await _refresh_membership(conn, ci, context)
    return ci


async def define_class(
    pool: asyncpg.Pool,
    name: str,
    description: str,
    attribute_schema: dict[str, Any],
    context: RequestContext,
) -> int:
    """Create or replace a tenant CI class; built-in names are reserved. Returns its version."""
    if name in classes.BUILTIN_CLASSES:
        raise Problem(
            409,
            "Conflict",
            f"{name} is a built-in class: define a class of your own that extends it",
            errors=[{"in": "path", "field": "name", "detail": "built-in class"}],
        )
    try:
        classes.validate_class_schema(attribute_schema)
    except classes.ClassSchemaError as exc:
        raise invalid(classes.problem_errors(exc.schema_problems)) from None
    async with tenant_transaction(pool, context.tenant_id) as conn:
        version = await repository.define_class(
            conn,
            context.tenant_id,
            name,
            description=description,
            attribute_schema=attribute_schema,
            actor=context.actor,
            now=datetime.now(UTC),
        )
        await outbox.append(
            conn,
            CiClassDefinedV1(
                name=name,
                description=description,
                attribute_schema=attribute_schema,
                version=version,
            ),
            subject=f"ci-class/{name}",
            tenant_id=context.tenant_id,
            sequence=version,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
    return version
