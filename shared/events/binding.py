"""CloudEvents Kafka protocol binding, binary content mode; the aggregate id is the message key."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.events.catalogue import EventPayload, spec_for
from shared.events.envelope import Envelope

Headers = list[tuple[str, bytes]]

CONTENT_TYPE = "application/json"
# CloudEvents attributes carried as `ce_` headers; `data` is the message value.
_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "tenantid",
    "itsmversion",
    "correlationid",
    "causationid",
    "actor",
)

# Read, never written: the attribute that carried the aggregate version before `itsmversion`.
LEGACY_VERSION_ATTRIBUTE = "sequence"


class DecodeError(Exception):
    """A message that cannot become an event; `reason` is a stable, machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on the wire for one event."""

    key: bytes
    value: bytes
    headers: Headers


def encode_json(data: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON bytes."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str).encode()


def header_map(envelope: Envelope) -> dict[str, str]:
    """The binding's headers for an envelope, as text."""
    headers = {"content-type": CONTENT_TYPE}
    for name in _ATTRIBUTES:
        value = getattr(envelope, name)
        if value is None:
            continue
        if name == "time":
            value = value.isoformat()
        headers[f"ce_{name}"] = str(value)
    return headers


def to_kafka(envelope: Envelope) -> KafkaRecord:
    """Encode an envelope as a Kafka record."""
    return KafkaRecord(
        key=envelope.subject.encode(),
        value=encode_json(envelope.data),
        headers=[(k, v.encode()) for k, v in header_map(envelope).items()],
    )


def from_kafka(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Envelope:
    """Decode a Kafka record into an envelope; raise DecodeError saying why it cannot be one."""
    attrs: dict[str, Any] = {}
    content_type = None
    for name, raw in headers:
        if name != "content-type" and not name.startswith("ce_"):
            continue  # not the binding's (tracing, a producer's own): any bytes, none of ours
        try:
            text = raw.decode()
        except (UnicodeDecodeError, AttributeError):
            raise DecodeError("malformed-header", f"header {name!r} is not UTF-8") from None
        if name == "content-type":
            content_type = text
        elif name.startswith("ce_"):
            attrs[name[3:]] = text
    if "specversion" not in attrs:
        raise DecodeError("not-a-cloudevent", "the message has no ce_specversion header")
    if content_type is not None and not content_type.startswith(CONTENT_TYPE):
        raise DecodeError("unsupported-content-type", f"content-type {content_type!r}")
    if value is None:
        raise DecodeError("malformed-data", "the message has no value")
    try:
        data = json.loads(value, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers UnicodeDecodeError, JSONDecodeError, NaN/Infinity (not JSON) and
        # integers too long for int(); RecursionError, nesting deeper than Python parses.
        raise DecodeError("malformed-data", f"the value is not JSON: {exc!r}"[:500]) from None
    if not isinstance(data, dict):
        raise DecodeError("malformed-data", "the value is not a JSON object")
    # Events written before `itsmversion` carried the aggregate version in `sequence`.
    legacy_version = attrs.pop(LEGACY_VERSION_ATTRIBUTE, None)
    if "itsmversion" not in attrs and legacy_version is not None:
        attrs["itsmversion"] = legacy_version
    unknown = set(attrs) - set(_ATTRIBUTES)
    for name in unknown:  # extensions we do not use are not an error
        attrs.pop(name)
    try:
        return Envelope.model_validate({**attrs, "data": data})
    except ValidationError as exc:
        raise DecodeError("invalid-envelope", _describe(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_payload(envelope: Envelope) -> EventPayload:
    """Validate an envelope's data against the catalogue model of its type."""
    spec = spec_for(envelope.type)
    if spec is None:
        raise DecodeError("unknown-event-type", f"type {envelope.type!r} is not in the catalogue")
    try:
        payload: EventPayload = spec.model.model_validate(envelope.data)
        return payload
    except ValidationError as exc:
        raise DecodeError("invalid-payload", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """One line naming each offending field."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)
