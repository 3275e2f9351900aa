"""Service catalogue use cases: calendars, SLA policies, business service announcements.

Each runs in one unit of work (`application/uow.py`) and records its events there. Locks are
always taken in the same order — calendar, then policies, then business service CIs, then
announcement counters — so concurrent definitions wait for each other instead of deadlocking,
and an event never carries a calendar or a CI state that a concurrent commit has already
replaced:

- a policy definition share-locks its calendar, so a calendar redefinition either commits
  first (and the policy embeds the new spec) or waits and then republishes the policy;
- a policy definition share-locks the business service CIs it adds or removes, so an
  announcement from a CI modification (which holds the CI's row lock) never interleaves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.config.application.uow import CatalogueRepository, ConfigUnit
from services.config.domain.catalogue import (
    BUSINESS_SERVICE,
    FieldProblem,
    SlaPolicyDefinition,
    business_service_event,
    calendar_event,
    calendar_problems,
    policy_event,
    policy_problems,
)
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.errors import (
    Conflict,
    FieldError,
    PreconditionFailed,
    StaleVersion,
    ValidationFailed,
    invalid_field,
)
from shared.events.catalogue import BusinessServiceDefinedV1


@dataclass(frozen=True)
class DefineCalendar:
    """Command: define or redefine a business-hours calendar (`expected_version`: If-Match)."""

    name: str
    description: str
    spec: CalendarSpec
    expected_version: int | None = None


@dataclass(frozen=True)
class DefinePolicy:
    """Command: define or redefine an SLA policy (`expected_version`: If-Match)."""

    name: str
    definition: SlaPolicyDefinition
    expected_version: int | None = None


def _check_precondition(kind: str, name: str, current: int | None, expected: int | None) -> None:
    if expected is None or current == expected:
        return
    if current is None:
        raise PreconditionFailed(f"{kind} {name} does not exist yet: define it without If-Match")
    raise StaleVersion(f"{kind} {name}", current, expected)


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


async def define_calendar(uow: ConfigUnit, command: DefineCalendar) -> dict[str, Any]:
    """Create or redefine a calendar, and republish every policy on it (new policy versions)."""
    name, description, spec = command.name, command.description, command.spec
    problems = calendar_problems(spec)
    if problems:
        raise ValidationFailed(problems)
    now = datetime.now(UTC)
    async with uow:
        current = await uow.catalogue.calendar(name, lock="UPDATE")
        _check_precondition(
            "calendar", name, current["version"] if current else None, command.expected_version
        )
        version = await uow.catalogue.save_calendar(
            name, description=description, spec=spec, actor=uow.context.actor, now=now
        )
        uow.record(f"calendar/{name}", version, [calendar_event(name, description, spec, version)])
        for policy in await uow.catalogue.policies_using(name):
            await _republish(uow, policy, version, spec, now)
        saved = await uow.catalogue.calendar(name)
    assert saved is not None
    return calendar_out(saved)


async def _republish(
    uow: ConfigUnit,
    policy: dict[str, Any],
    calendar_version: int,
    spec: CalendarSpec,
    now: datetime,
) -> None:
    """A policy's next version, unchanged but for its calendar: consumers keep policies only."""
    name, definition = policy["name"], policy["definition"]
    actor = uow.context.actor
    version = await uow.catalogue.bump_policy(name, actor=actor, now=now)
    await uow.catalogue.record_policy_version(
        name,
        definition,
        version=version,
        cause="calendar_redefined",
        calendar_version=calendar_version,
        calendar=spec,
        actor=actor,
        now=now,
    )
    uow.record(f"sla-policy/{name}", version, [policy_event(name, definition, spec, version)])


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


async def define_policy(uow: ConfigUnit, command: DefinePolicy) -> dict[str, Any]:
    """Create or redefine an SLA policy; announce the business services it gains or loses."""
    name, definition = command.name, command.definition
    problems = policy_problems(definition)
    if problems:
        raise ValidationFailed(problems)
    now = datetime.now(UTC)
    actor = uow.context.actor
    async with uow:
        repository = uow.catalogue
        calendar = await repository.calendar(definition.calendar, lock="SHARE")
        if calendar is None:
            raise invalid_field("calendar", f"no calendar named {definition.calendar!r}")
        current = await repository.policy(name, for_update=True)
        _check_precondition(
            "SLA policy", name, current["version"] if current else None, command.expected_version
        )
        before: tuple[uuid.UUID, ...] = current["definition"].services if current else ()
        found = await repository.cis_share_locked(sorted(set(before) | set(definition.services)))
        problems = _service_problems(definition.services, found)
        if problems:
            raise ValidationFailed(problems)
        await _check_conflicts(repository, name, definition)
        version = current["version"] + 1 if current else 1
        try:
            await repository.save_policy(name, definition, version=version, actor=actor, now=now)
            await repository.set_coverage(name, list(definition.services))
        except asyncpg.UniqueViolationError:
            # A concurrent definition took the default or a service after our checks.
            raise Conflict(
                "a concurrent SLA policy definition took the default or one of these services:"
                " read the policies again and retry"
            ) from None
        await repository.record_policy_version(
            name,
            definition,
            version=version,
            cause="defined",
            calendar_version=calendar["version"],
            calendar=calendar["spec"],
            actor=actor,
            now=now,
        )
        uow.record(
            f"sla-policy/{name}",
            version,
            [policy_event(name, definition, calendar["spec"], version)],
        )
        changed = set(before) ^ set(definition.services)
        for service_id in sorted(changed):
            await announce_business_service(uow, found[service_id])
        saved = await repository.policy(name)
    assert saved is not None
    return policy_out(saved)


async def _check_conflicts(
    repository: CatalogueRepository, name: str, definition: SlaPolicyDefinition
) -> None:
    """Conflict naming the services another policy covers, or `default` if another is it."""
    elsewhere = await repository.covered_elsewhere(name, list(definition.services))
    errors = [
        FieldError(
            f"services.{index}",
            f"{service_id} is already covered by SLA policy {elsewhere[service_id]!r}",
        )
        for index, service_id in enumerate(definition.services)
        if service_id in elsewhere
    ]
    if definition.default:
        other = await repository.other_default(name)
        if other is not None:
            errors.append(FieldError("default", f"SLA policy {other!r} is already the default"))
    if errors:
        raise Conflict(
            "; ".join(e.detail for e in errors)
            + ": a business service has one SLA policy and a tenant one default",
            fields=errors,
        )


async def business_service_announcement(
    repository: CatalogueRepository, ci: ConfigurationItem
) -> tuple[str, int, BusinessServiceDefinedV1]:
    """(subject, sequence, event) announcing a business service CI's catalogue entry; takes the
    next number of the service's own announcement counter (not the CI version: policies change
    entries too)."""
    if ci.ci_class != BUSINESS_SERVICE:
        raise ValueError(f"CI {ci.id} is a {ci.ci_class}, not a {BUSINESS_SERVICE}")
    policy = await repository.covering_policy(ci.id)
    sequence = await repository.next_announcement(ci.id)
    return f"business-service/{ci.id}", sequence, business_service_event(ci, policy, sequence)


async def announce_business_service(uow: ConfigUnit, ci: ConfigurationItem) -> None:
    """Record BusinessServiceDefinedV1 for a business service CI, in the open unit of work.

    Call it whenever the service's catalogue entry may have changed: the CI was registered or
    modified, or a policy started or stopped covering it. The caller should hold the CI's row
    lock (any lock mode) so the state announced is the committed one.
    """
    subject, sequence, event = await business_service_announcement(uow.catalogue, ci)
    uow.record(subject, sequence, [event])
