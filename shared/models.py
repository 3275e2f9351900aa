"""The base of every JSON request body: unknown fields refused, numbers and booleans taken as sent.

Outside `shared/http` so that application code may validate an input with it too
(`shared/http/models.py` re-exports it for the HTTP layer).

FastAPI validates a parsed body in pydantic's lax Python mode, where `"1"`, `1.0` and `true`
all become the integer 1 and `"yes"` the boolean True. A client that sends a string where the
API documents a number has a bug we want it to see (422 naming the field), not a guess. Strict
mode for the whole model is no answer: in Python mode it would refuse the strings that JSON
uses for UUIDs and timestamps. So the int, float and bool validators of a body model are made
strict once, when its schema is built: nothing is added to a request's work.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema


def _make_numbers_strict(schema: Any, model: type[BaseModel]) -> None:
    if isinstance(schema, list):
        for item in schema:
            _make_numbers_strict(item, model)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")  # not a str in a `fields` mapping holding a field named "type"
    if kind == "model" and schema.get("cls") is not model:
        # A nested model keeps its own schema: a RequestBody is strict by itself, and any other
        # model is shared with code that is not ours to change (create_app names it if lax).
        return
    if kind in ("int", "float", "bool"):
        schema["strict"] = True
    for value in schema.values():
        _make_numbers_strict(value, model)


class RequestBody(BaseModel):
    """A JSON request body: `extra="forbid"`, and int/float/bool fields accept only JSON numbers
    and booleans of that kind (a strict float still takes an integer)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """The model's schema with its number and boolean validators made strict."""
        schema = handler(source)
        _make_numbers_strict(schema, cls)
        return schema


def lax_number_fields(model: type[BaseModel]) -> list[str]:
    """`Model.field` for each int/float/bool of the model that would coerce a string or boolean."""
    fields = _fields_of(model.__pydantic_core_schema__, model) or {}
    return [f"{model.__name__}.{name}" for name, field in fields.items() if _has_lax_number(field)]


def _fields_of(schema: Any, model: type[BaseModel]) -> dict[str, Any] | None:
    """The `model-fields` of the model's own schema (under any validator wrapping it)."""
    if isinstance(schema, list):
        return next((f for f in (_fields_of(i, model) for i in schema) if f is not None), None)
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "model" and schema.get("cls") is not model:
        return None
    if schema.get("type") == "model-fields":
        fields: dict[str, Any] = schema["fields"]
        return fields
    return _fields_of(list(schema.values()), model)


def _has_lax_number(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_has_lax_number(item) for item in schema)
    if not isinstance(schema, dict) or schema.get("type") == "model":
        return False
    if schema.get("type") in ("int", "float", "bool") and not schema.get("strict"):
        return True
    return any(_has_lax_number(value) for value in schema.values())
