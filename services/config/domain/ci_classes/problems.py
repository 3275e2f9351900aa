"""What is wrong with a CI's attributes or a class schema, at which place, and the typed
422s (`shared.errors.ValidationFailed`) that carry them to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from shared.errors import FieldError, ValidationFailed

ATTRIBUTES_FIELD = "attributes"  # where a CI's attributes sit in request bodies
SCHEMA_FIELD = "attribute_schema"  # where a class's schema sits in request bodies


Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldProblem:
    """Something wrong at one place of a request body: a dotted `field` and a message."""

    field: str
    detail: str
    path: Path = ()  # the same place as tokens, for a JSON pointer (names may contain dots)

    @property
    def pointer(self) -> str:
        """The place as a JSON pointer in URI fragment form, e.g. `#/attributes/port`."""
        tokens = (str(t).replace("~", "~0").replace("/", "~1") for t in self.path)
        return "#/" + "/".join(quote(t, safe="!$&'()*+,;=:@-._~") for t in tokens)


@dataclass(frozen=True)
class AttributeProblem(FieldProblem):
    """An attribute of a CI that breaks its class schema (`field` starts with `attributes`)."""


@dataclass(frozen=True)
class SchemaProblem(FieldProblem):
    """A part of a class schema the service refuses (`field` starts with `attribute_schema`)."""


P = TypeVar("P", bound=FieldProblem)


def problem_at(cls: type[P], path: Path, detail: str) -> P:
    return cls(".".join(str(t) for t in path), detail, path)


def field_errors(problems: Iterable[FieldProblem]) -> list[FieldError]:
    """The problems as the fields a 422 names, each with its JSON pointer."""
    return [FieldError(p.field, p.detail, "body", p.pointer) for p in problems]


# Still a ValueError as well, as it was before it became a typed error.
class ClassSchemaError(ValidationFailed, ValueError):
    """A class schema refused (422 naming every place): `problems` as readable lines,
    `schema_problems` with their places."""

    def __init__(self, problems: Sequence[SchemaProblem]) -> None:
        self.schema_problems = tuple(problems)
        self.problems = [f"{p.field}: {p.detail}" for p in self.schema_problems]
        super().__init__(field_errors(self.schema_problems))


class AttributesRefused(ValidationFailed):
    """A CI's attributes that break its class schema (422 naming every attribute)."""

    def __init__(self, problems: Sequence[AttributeProblem]) -> None:
        self.attribute_problems = tuple(problems)
        super().__init__(field_errors(self.attribute_problems))


def problem_errors(problems: Iterable[FieldProblem]) -> list[dict[str, str]]:
    """The `errors` of a 422 problem+json body as dicts (what `problem_of` renders from
    `field_errors`), for callers that word a problem themselves."""
    return [
        {"in": "body", "field": p.field, "detail": p.detail, "pointer": p.pointer} for p in problems
    ]


def show(value: Any, limit: int = 60) -> str:
    """A value as a message quotes it, cut to `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
