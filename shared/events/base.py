"""The base of every event payload, and the registry from CloudEvents type to payload model.

A payload class registers itself with `@event(type, topic=..., source=...)` when its module is
imported; `shared/events/catalogue.py` imports every domain's module, so importing it fills
`CATALOGUE`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

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
    return spec_of_class(type(payload))


def spec_of_class(model: type[EventPayload]) -> EventSpec:
    """The spec of a payload class; LookupError for a class the catalogue does not hold."""
    try:
        return _BY_MODEL[model]
    except KeyError:
        raise LookupError(f"{model.__name__} is not in the event catalogue") from None
