"""Service catalogue use cases: calendars, SLA policies, business service announcements.

Each runs in one tenant transaction with its outbox events. Locks are always taken in the
same order — calendar, then policies, then business service CIs, then announcement counters —
so concurrent definitions wait for each other instead of deadlocking, and an event never carries
a calendar or a CI state that a concurrent commit has already replaced:

- a policy definition share-locks its calendar, so a calendar redefinition either commits
  first (and the policy embeds the new spec) or waits and then republishes the policy;
- a policy definition share-locks the business service CIs it adds or removes, so an
  announcement from a CI modification (which holds the CI's row lock) never interleaves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.config.adapters import catalogue as repository
from services.config.domain.catalogue import (
    BUSINESS_SERVICE,
    FieldProblem,
    SlaPolicyDefinition,
    business_service_event,
    calendar_event,
    calendar_problems,
    policy_event,
    policy_problems,
    problem_errors,
)
from services.config.domain.ci import ConfigurationItem
from shared import outbox
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.http.etags import stale_version
from shared.http.problems import Problem, invalid


def _check_precondition(kind: str, name: str, current: int | None, expected: int | None) -> None:
    if expected is None or current == expected:
        return
    if current is None:
        raise Problem(
            412,
            "Precondition Failed",
            f"{kind} {name} does not exist yet: define it without If-Match",
        )
    raise stale_version(f"{kind} {name}", current, expected)


def calendar_out(row: dict[str, Any]) -> dict[str, Any]:
    """A calendar as the API returns it."""
    return {
        "name": row["name"],
        "description": row["description"],
        "calendar": row["spec"].model_dump(mode="json"),
        "version": row["version"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def policy_out(row: dict[str, Any]) -> dict[str, Any]:
    """An SLA policy as the API returns it."""
    definition: SlaPolicyDefinition = row["definition"]
    return {
        "name": row["name"],
        **definition.as_stored(),
        "version": row["version"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


async def define_calendar(
    pool: asyncpg.Pool,
    name: str,
    description: str,
    spec: CalendarSpec,
    expected_version: int | None,
    context: RequestContext,
) -> dict[str, Any]:
    """Create or redefine a calendar, and republish every policy on it (new policy versions)."""
    problems = calendar_problems(spec)
    if problems:
        raise invalid(problem_errors(problems))
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        current = await repository.calendar(conn, context.tenant_id, name, lock="UPDATE")
        _check_precondition(
            "calendar", name, current["version"] if current else None, expected_version
        )
        version = await repository.save_calendar(
            conn,
            context.tenant_id,
            name,
            description=description,
            spec=spec,
            actor=context.actor,
            now=now,
        )
        await outbox.append(
            conn,
            calendar_event(name, description, spec, version),
            subject=f"calendar/{name}",
            tenant_id=context.tenant_id,
            sequence=version,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
        for policy in await repository.policies_using(conn, context.tenant_id, name):
            await _republish(conn, policy, version, spec, context, now)
        saved = await repository.calendar(conn, context.tenant_id, name)
    assert saved is not None
    return calendar_out(saved)


async def _republish(
    conn: Connection,
    policy: dict[str, Any],
    calendar_version: int,
    spec: CalendarSpec,
    context: RequestContext,
    now: datetime,
) -> None:
    """A policy's next version, unchanged but for its calendar: consumers keep policies only."""
    name, definition = policy["name"], policy["definition"]
    version = await repository.bump_policy(
        conn, context.tenant_id, name, actor=context.actor, now=now
    )
    await repository.record_policy_version(
        conn,
        context.tenant_id,
        name,
        definition,
        version=version,
        cause="calendar_redefined",
        calendar_version=calendar_version,
        calendar=spec,
        actor=context.actor,
        now=now,
    )
    await outbox.append(
        conn,
        policy_event(name, definition, spec, version),
        subject=f"sla-policy/{name}",
        tenant_id=context.tenant_id,
        sequence=version,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )


def _service_problems(
    services: tuple[uuid.UUID, ...], found: dict[uuid.UUID, ConfigurationItem]
) -> list[FieldProblem]:
    problems = []
    for index, service_id in enumerate(services):
        ci = found.get(service_id)
        if ci is None or ci.ci_class != BUSINESS_SERVICE:
            detail = f"{service_id} is not a business service of this tenant"
        elif ci.status == "retired":
            detail = f"business service {service_id} ({ci.name}) is retired"
        else:
            continue
        problems.append(FieldProblem(f"services.{index}", detail))
    return problems


async def define_policy(
    pool: asyncpg.Pool,
    name: str,
    definition: SlaPolicyDefinition,
    expected_version: int | None,
    context: RequestContext,
) -> dict[str, Any]:
    """Create or redefine an SLA policy; announce the business services it gains or loses."""
    problems = policy_problems(definition)
    if problems:
        raise invalid(problem_errors(problems))
    now = datetime.now(UTC)
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        calendar = await repository.calendar(conn, tenant, definition.calendar, lock="SHARE")
        if calendar is None:
            raise invalid(
                problem_errors(
                    [FieldProblem("calendar", f"no calendar named {definition.calendar!r}")]
                )
            )
        current = await repository.policy(conn, tenant, name, for_update=True)
        _check_precondition(
            "SLA policy", name, current["version"] if current else None, expected_version
        )
        before: tuple[uuid.UUID, ...] = current["definition"].services if current else ()
        found = await repository.cis_share_locked(
            conn, tenant, sorted(set(before) | set(definition.services))
        )
        problems = _service_problems(definition.services, found)
        if problems:
            raise invalid(problem_errors(problems))
        await _check_conflicts(conn, tenant, name, definition)
        version = current["version"] + 1 if current else 1
        try:
            await repository.save_policy(
                conn, tenant, name, definition, version=version, actor=context.actor, now=now
            )
            await repository.set_coverage(conn, tenant, name, list(definition.services))
        except asyncpg.UniqueViolationError:
            # A concurrent definition took the default or a service after our checks.
            raise Problem(
                409,
                "Conflict",
                "a concurrent SLA policy definition took the default or one of these services:"
                " read the policies again and retry",
            ) from None
        await repository.record_policy_version(
            conn,
            tenant,
            name,
            definition,
            version=version,
            cause="defined",
            calendar_version=calendar["version"],
            calendar=calendar["spec"],
            actor=context.actor,
            now=now,
        )
        await outbox.append(
            conn,
            policy_event(name, definition, calendar["spec"], version),
            subject=f"sla-policy/{name}",
            tenant_id=tenant,
            sequence=version,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
        changed = set(before) ^ set(definition.services)
        for service_id in sorted(changed):
            await announce_business_service(
                conn, found[service_id], actor=context.actor, correlation_id=context.correlation_id
            )
        saved = await repository.policy(conn, tenant, name)
    assert saved is not None
    return policy_out(saved)


async def _check_conflicts(
    conn: Connection, tenant: str, name: str, definition: SlaPolicyDefinition
) -> None:
    """409 naming the services another policy covers, or `default` if another is the default."""
    elsewhere = await repository.covered_elsewhere(conn, tenant, name, list(definition.services))
    errors = [
        {
            "in": "body",
            "field": f"services.{index}",
            "detail": f"{service_id} is already covered by SLA policy {elsewhere[service_id]!r}",
        }
        for index, service_id in enumerate(definition.services)
        if service_id in elsewhere
    ]
    if definition.default:
        other = await repository.other_default(conn, tenant, name)
        if other is not None:
            errors.append(
                {
                    "in": "body",
                    "field": "default",
                    "detail": f"SLA policy {other!r} is already the default",
                }
            )
    if errors:
        raise Problem(
            409,
            "Conflict",
            "; ".join(e["detail"] for e in errors)
            + ": a business service has one SLA policy and a tenant one default",
            errors=errors,
        )


async def announce_business_service(
    conn: Connection, ci: ConfigurationItem, *, actor: str, correlation_id: str | None
) -> None:
    """Append BusinessServiceDefinedV1 for a business service CI, in the caller's transaction.

    Call it whenever the service's catalogue entry may have changed: the CI was registered or
    modified, or a policy started or stopped covering it. The sequence is the service's own
    announcement counter (it is not the CI version: policies change entries too). The caller
    should hold the CI's row lock (any lock mode) so the state announced is the committed one.
    """
    if ci.ci_class != BUSINESS_SERVICE:
        raise ValueError(f"CI {ci.id} is a {ci.ci_class}, not a {BUSINESS_SERVICE}")
    policy = await repository.covering_policy(conn, ci.tenant_id, ci.id)
    sequence = await repository.next_announcement(conn, ci.tenant_id, ci.id)
    await outbox.append(
        conn,
        business_service_event(ci, policy, sequence),
        subject=f"business-service/{ci.id}",
        tenant_id=ci.tenant_id,
        sequence=sequence,
        actor=actor,
        correlation_id=correlation_id,
    )
