"""Baseline use cases: name an instant of the CMDB, compare two instants (each in a unit of
work; a diff records nothing)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.config.application.uow import ConfigUnit
from shared.errors import Conflict, FieldError, NotFound, invalid_field
from shared.events.catalogue import BaselineCreatedV1

# `?against=now` compares with the present; no baseline may take the name.
NOW = "now"


@dataclass(frozen=True)
class CreateBaseline:
    """Command: name the CMDB as it was at an instant (None: now)."""

    name: str
    description: str
    at: datetime | None


@dataclass(frozen=True)
class Instant:
    """One side of a diff: a baseline (or `now`) and its instant."""

    name: str
    at: datetime


@dataclass(frozen=True)
class DiffPosition:
    """Where a page of a diff starts: the CIs first, by id, then the relationships, by id."""

    section: str  # "cis" or "relationships"
    after: uuid.UUID | None
    now: datetime | None = None  # `now` as the first page saw it: every page diffs the same


async def create_baseline(uow: ConfigUnit, command: CreateBaseline) -> dict[str, Any]:
    """Store the baseline with its counts and announce it; ValidationFailed for a future
    instant or the reserved name, Conflict for a name taken."""
    now = datetime.now(UTC)
    at = command.at or now
    if command.name == NOW:
        raise invalid_field("name", f"{NOW!r} is reserved")
    if at > now:
        raise invalid_field("at", "a baseline cannot be in the future")
    taken = Conflict(
        f"a baseline named {command.name} already exists: baselines are immutable",
        fields=[FieldError("name", "already used")],
    )
    async with uow:
        if await uow.baselines.get(command.name) is not None:
            raise taken
        await uow.baselines.prepare_for_history()
        cis, relationships = await uow.baselines.counts_at(at)
        baseline = {
            "name": command.name,
            "description": command.description,
            "at": at,
            "cis": cis,
            "relationships": relationships,
            "created_at": now,
            "created_by": uow.context.actor,
        }
        if not await uow.baselines.insert(baseline):
            raise taken
        uow.record(
            f"baseline/{command.name}",
            1,
            [
                BaselineCreatedV1(
                    name=command.name,
                    description=command.description,
                    at=at,
                    cis=cis,
                    relationships=relationships,
                )
            ],
        )
    return baseline


async def diff(
    uow: ConfigUnit,
    name: str,
    against: str,
    *,
    position: DiffPosition,
    limit: int,
) -> dict[str, Any]:
    """The CMDB compared between a baseline and another (or now), from the earlier to the later.

    Summary counts always; one page of the item lists: CIs by id, then relationships by id.
    Records nothing. NotFound names the baseline (or `against`) the tenant does not have.
    """
    async with uow:
        repository = uow.baselines
        baseline = await repository.get(name)
        if baseline is None:
            raise NotFound("baseline", name)
        if against == NOW:
            other = Instant(NOW, position.now or datetime.now(UTC))
        else:
            found = await repository.get(against)
            if found is None:
                raise NotFound("baseline", against)
            other = Instant(against, found["at"])
        this = Instant(name, baseline["at"])
        pinned = other.at if against == NOW else None
        earlier, later = (this, other) if this.at <= other.at else (other, this)
        await repository.prepare_for_history()

        ci_summary = await repository.ci_changes_summary(earlier.at, later.at)
        relationship_summary = await repository.relationship_changes_summary(earlier.at, later.at)
        cis: list[dict[str, Any]] = []
        relationships: list[dict[str, Any]] = []
        next_position: DiffPosition | None = None
        if position.section == "cis":
            rows = await repository.ci_changes(
                earlier.at, later.at, after=position.after, limit=limit + 1
            )
            cis = [_ci_item(r) for r in rows[:limit]]
            if len(rows) > limit:
                next_position = DiffPosition("cis", cis[-1]["id"], pinned)
            elif len(cis) < limit:
                position = DiffPosition("relationships", None, pinned)
            elif sum(relationship_summary.values()):
                next_position = DiffPosition("relationships", None, pinned)
        if position.section == "relationships":
            room = limit - len(cis)
            rows = await repository.relationship_changes(
                earlier.at, later.at, after=position.after, limit=room + 1
            )
            relationships = rows[:room]
            if len(rows) > room:
                next_position = DiffPosition("relationships", relationships[-1]["id"], pinned)
    return {
        "from": {"name": earlier.name, "at": earlier.at},
        "to": {"name": later.name, "at": later.at},
        "summary": {"cis": ci_summary, "relationships": relationship_summary},
        "cis": cis,
        "relationships": relationships,
        "next": next_position,
    }


def _ci_item(row: dict[str, Any]) -> dict[str, Any]:
    state = row["after"] or row["before"]  # named as at the later instant
    return {
        "id": row["id"],
        "ci_class": state["ci_class"],
        "name": state["name"],
        "change": row["change"],
        "fields": row["fields"] or {},
        "from": row["before"],
        "to": row["after"],
    }
