"""The service catalogue's rules: SLA policies, their calendars, business service entries.

Pure: no I/O. The rules that need the database (the calendar exists, each service is a
business service of the tenant, a service is covered by one policy, one default policy) are
checked by `application/catalogue.py`; everything an SLA policy says about itself is here, each
problem named by its field path as HTTP reports it (`targets.P2.response_minutes`), a
`shared.errors.FieldError` that the use case raises in one `ValidationFailed`.

Targets are business minutes on the policy's calendar; events carry them in seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from services.config.domain import classes
from services.config.domain.ci import ConfigurationItem
from shared.calendars import CalendarSpec
from shared.errors import FieldError
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CalendarDefinedV1,
    CalendarV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)

Priority = Literal["P1", "P2", "P3", "P4", "P5"]
PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)
# The incident service's on-hold reasons, and a service request waiting for its approval.
PAUSE_REASONS: Final = (
    "awaiting_customer",
    "awaiting_vendor",
    "awaiting_change",
    "awaiting_approval",
)
DEFAULT_PAUSE_ON: Final = ("awaiting_customer",)
DEFAULT_WARNING_THRESHOLD: Final = 0.75
# A target longer than a year of business time is a typo, not an agreement.
MAX_TARGET_MINUTES: Final = 365 * 24 * 60
MAX_SERVICES: Final = 1000

BUSINESS_SERVICE: Final = "business_service"
# The built-in business_service class's attributes that make a catalogue entry.
OWNER: Final = "owner"
CUSTOMER: Final = "customer"
AVAILABILITY_TARGET: Final = "availability_target"
assert {OWNER, CUSTOMER, AVAILABILITY_TARGET} <= set(
    classes.BUILTIN_CLASSES[BUSINESS_SERVICE]["properties"]
)


# One refused part of a definition: its field path (as the body names it) and why. A list of
# them is refused at once with `ValidationFailed(problems)`.
FieldProblem = FieldError


@dataclass(frozen=True)
class Target:
    """Response and resolution targets of one priority, in business minutes."""

    response_minutes: int
    resolution_minutes: int


@dataclass(frozen=True)
class SlaPolicyDefinition:
    """An SLA policy as its author defines it."""

    description: str
    calendar: str
    targets: Mapping[str, Target]
    pause_on: tuple[str, ...] = DEFAULT_PAUSE_ON
    warning_threshold: float = DEFAULT_WARNING_THRESHOLD
    services: tuple[uuid.UUID, ...] = ()
    default: bool = False

    def as_stored(self) -> dict[str, Any]:
        """The definition as the history keeps it and the API returns it (JSON-ready)."""
        return {
            "description": self.description,
            "calendar": self.calendar,
            "targets": {
                p: {
                    "response_minutes": t.response_minutes,
                    "resolution_minutes": t.resolution_minutes,
                }
                for p, t in sorted(self.targets.items())
            },
            "pause_on": list(self.pause_on),
            "warning_threshold": self.warning_threshold,
            "services": [str(s) for s in self.services],
            "default": self.default,
        }


def _minutes_problem(value: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "must be a whole number of minutes greater than 0"
    if value > MAX_TARGET_MINUTES:
        return f"must be at most {MAX_TARGET_MINUTES} minutes (a year)"
    return None


def _target_problems(targets: Mapping[str, Target]) -> list[FieldProblem]:
    problems = [
        FieldProblem(f"targets.{p}", "required: every priority P1 to P5 needs its targets")
        for p in PRIORITIES
        if p not in targets
    ]
    problems += [
        FieldProblem(f"targets.{key}", "not a priority: use P1 to P5")
        for key in sorted(targets)
        if key not in PRIORITIES
    ]
    for priority in PRIORITIES:
        target = targets.get(priority)
        if target is None:
            continue
        response = _minutes_problem(target.response_minutes)
        resolution = _minutes_problem(target.resolution_minutes)
        if response:
            problems.append(FieldProblem(f"targets.{priority}.response_minutes", response))
        if resolution:
            problems.append(FieldProblem(f"targets.{priority}.resolution_minutes", resolution))
        if not response and not resolution and target.response_minutes > target.resolution_minutes:
            problems.append(
                FieldProblem(
                    f"targets.{priority}.response_minutes",
                    f"{target.response_minutes} is longer than the resolution target"
                    f" ({target.resolution_minutes}): a response cannot be due after resolution",
                )
            )
    return problems


def policy_problems(definition: SlaPolicyDefinition) -> list[FieldProblem]:
    """Everything wrong with a policy on its own, in field order; empty when it is acceptable."""
    problems = _target_problems(definition.targets)
    seen_reasons: set[str] = set()
    for index, reason in enumerate(definition.pause_on):
        if reason not in PAUSE_REASONS:
            problems.append(
                FieldProblem(f"pause_on.{index}", f"must be one of {', '.join(PAUSE_REASONS)}")
            )
        elif reason in seen_reasons:
            problems.append(FieldProblem(f"pause_on.{index}", f"{reason} is listed twice"))
        seen_reasons.add(reason)
    if not 0 < definition.warning_threshold < 1:
        problems.append(
            FieldProblem(
                "warning_threshold",
                "must be a fraction between 0 and 1 (exclusive), e.g. 0.75 warns at 75 %",
            )
        )
    if len(definition.services) > MAX_SERVICES:
        problems.append(FieldProblem("services", f"at most {MAX_SERVICES} services per policy"))
    seen_services: set[uuid.UUID] = set()
    for index, service in enumerate(definition.services):
        if service in seen_services:
            problems.append(FieldProblem(f"services.{index}", f"{service} is listed twice"))
        seen_services.add(service)
    return problems


def calendar_problems(spec: CalendarSpec) -> list[FieldProblem]:
    """What makes a calendar unusable for SLA clocks (pydantic has checked its shape)."""
    if not any(spec.weekly_hours.values()):
        return [
            FieldProblem(
                "calendar.weekly_hours",
                "the calendar never opens, so no SLA clock on it could ever run",
            )
        ]
    return []


def calendar_event(
    name: str, description: str, spec: CalendarSpec, version: int
) -> CalendarDefinedV1:
    """The event that announces a calendar's version."""
    return CalendarDefinedV1(
        name=name,
        description=description,
        calendar=CalendarV1.model_validate(spec.model_dump()),
        version=version,
    )


def policy_event(
    name: str, definition: SlaPolicyDefinition, calendar: CalendarSpec, version: int
) -> SlaPolicyDefinedV1:
    """The event that announces a policy's version: its calendar in full, targets in seconds."""
    return SlaPolicyDefinedV1(
        name=name,
        description=definition.description,
        targets={
            p: SlaTargetV1(
                response_seconds=definition.targets[p].response_minutes * 60,
                resolution_seconds=definition.targets[p].resolution_minutes * 60,
            )
            for p in PRIORITIES
        },
        calendar_name=definition.calendar,
        calendar=CalendarV1.model_validate(calendar.model_dump()),
        pause_on=list(definition.pause_on),
        warning_threshold=definition.warning_threshold,
        services=[str(s) for s in definition.services],
        default=definition.default,
        version=version,
    )


def catalogue_entry(ci: ConfigurationItem, sla_policy: str | None) -> dict[str, Any]:
    """A business service as the catalogue lists it (its attributes read defensively)."""
    if ci.ci_class != BUSINESS_SERVICE:
        raise ValueError(f"CI {ci.id} is a {ci.ci_class}, not a {BUSINESS_SERVICE}")
    target = ci.attributes.get(AVAILABILITY_TARGET)
    owner, customer = ci.attributes.get(OWNER), ci.attributes.get(CUSTOMER)
    return {
        "id": str(ci.id),
        "name": ci.name,
        "status": ci.status,
        "criticality": ci.criticality,
        "owner": owner if isinstance(owner, str) else None,
        "customer": customer if isinstance(customer, str) else None,
        "availability_target": (
            float(target)
            if isinstance(target, int | float) and not isinstance(target, bool)
            else None
        ),
        "sla_policy": sla_policy,
    }


def business_service_event(
    ci: ConfigurationItem, sla_policy: str | None, version: int
) -> BusinessServiceDefinedV1:
    """The event that announces a business service's catalogue entry (`version`: its sequence)."""
    return BusinessServiceDefinedV1(**catalogue_entry(ci, sla_policy), version=version)
