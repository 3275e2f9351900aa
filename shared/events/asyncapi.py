"""The event contract as an AsyncAPI 3.0 document, generated from the catalogue and the registry.

Channels are the Kafka topics (with their partitions and cleanup policy), one message per event
type: the payload's JSON Schema from its catalogue model, the CloudEvents attributes as the
`ce_*` headers of the Kafka binding's binary mode (schemas from `Envelope`), the subject as the
key. Operations are each service's `send` on the topics its events go to (from the catalogue),
its `receive` on the topics it consumes (from the registry), every process following the
revocation topic, and the dead letters a consumer writes.

faststream (0.7) emits AsyncAPI 3.0 too, but only of what its own broker declares: our events
are published by the outbox relay through aiokafka, consumers subscribe once per topic with one
batch handler, and its message objects have no headers (its own TODO), so it cannot tell the
`ce_*` headers or one message per event type. Hence this module.

`docs/asyncapi.json` is `render(platform_document())` (`make asyncapi` writes it); each service
serves its own view, `service_document(name)`, at `GET /asyncapi.json`.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shared.events.catalogue import AUTH_REVOCATIONS, CATALOGUE, EventSpec
from shared.events.envelope import Envelope
from shared.kafka import DEAD_LETTER_TOPIC, TOPIC_CONFIGS, TOPICS
from shared.registry import SERVICES, RegisteredService

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CONTENT_TYPE = "application/json"
HEADERS_SCHEMA = "CloudEventHeaders"
DEAD_LETTER_MESSAGE = "deadletter"
_SCHEMAS = "#/components/schemas/"

# What each CloudEvents attribute means on our events (docs/events.md says more). Written by
# hand; `header_schemas` refuses an attribute of the envelope that has no line here.
ATTRIBUTE_MEANINGS: dict[str, str] = {
    "specversion": "CloudEvents version.",
    "id": "Unique id of the event (UUID version 7); consumers deduplicate on it.",
    "source": "The service that published it: `itsm/<service>`.",
    "type": "The event type, `itsm.<domain>.<event>.v<N>`: names the payload's schema.",
    "subject": "The aggregate the event is about (also the message key).",
    "time": "When the change committed (RFC 3339, with its offset).",
    "tenantid": "The tenant the event belongs to (extension).",
    "itsmversion": "The subject's version after this event, gap-free from 1 (extension, an "
    "Integer: its decimal digits here).",
    "correlationid": "The request that caused it, as in `X-Correlation-Id` (extension).",
    "causationid": "The event that caused it, for a reaction (extension).",
    "actor": "Who acted: a token's subject, or `system:<task>` (extension).",
}

# The topics every process uses beside its own: said by hand, the rest is generated.
_TOPIC_DESCRIPTIONS = {
    AUTH_REVOCATIONS: "Revoked tokens, keyed `<tenant>/<jti>`, compacted: every process reads it "
    "whole at start-up and follows it, to refuse revoked tokens (SECURITY.md).",
    DEAD_LETTER_TOPIC: "Messages a consumer could not apply, as they were read (key, value and "
    "headers), with `dlq_*` headers saying why and where they came from.",
}

DEAD_LETTER_HEADERS: dict[str, str] = {
    "dlq_reason": "Why: a stable code (`not-a-cloudevent`, `malformed-data`, `invalid-envelope`, "
    "`unknown-event-type`, `invalid-payload`, `handler-failed`, ...).",
    "dlq_detail": "What was wrong, for a person (at most 2,000 characters).",
    "dlq_consumer": "The consumer (and consumer group) that gave up on it.",
    "dlq_source_topic": "The topic it was read from.",
    "dlq_source_partition": "Its partition there.",
    "dlq_source_offset": "Its offset there.",
    "dlq_time": "When it was dead-lettered (RFC 3339).",
}

Action = Literal["send", "receive"]


@dataclass(frozen=True)
class Operation:
    """One thing a service does with one topic."""

    service: str
    verb: str
    action: Action
    topic: str
    summary: str

    @property
    def key(self) -> str:
        """Its id in the document: `<service>.<verb>.<topic>`."""
        return f"{self.service}.{self.verb}.{self.topic}"


def operations(services: Sequence[RegisteredService] = SERVICES) -> list[Operation]:
    """Every service's operations, in registry order."""
    found: list[Operation] = []
    for entry in services:
        source = f"itsm/{entry.name}"
        published = sorted({s.topic for s in CATALOGUE.values() if s.source == source})
        found += [
            Operation(entry.name, "publish", "send", topic, "Publishes its events (outbox relay).")
            for topic in published
        ]
        found += [
            Operation(
                entry.name,
                "consume",
                "receive",
                topic,
                "Consumes the topic in consumer groups of its own, each event applied once.",
            )
            for topic in entry.consumes
        ]
        found.append(
            Operation(
                entry.name,
                "follow",
                "receive",
                AUTH_REVOCATIONS,
                "Reads the revocations whole at start-up, then follows them (no consumer group).",
            )
        )
        if entry.consumes:
            found.append(
                Operation(
                    entry.name,
                    "dead-letter",
                    "send",
                    DEAD_LETTER_TOPIC,
                    "Dead-letters a message its consumers cannot apply, and moves on.",
                )
            )
    return found


def platform_document(*, version: str = "0.1.0") -> dict[str, Any]:
    """The whole platform's event contract: every topic, event type and service operation."""
    return _document(
        operations(),
        title="ITSM platform events",
        version=version,
        description="Every event the platform's services publish and consume on Kafka, as "
        "CloudEvents 1.0 in the Kafka protocol binding's binary mode (docs/events.md).",
    )


def service_document(name: str, *, version: str = "0.1.0") -> dict[str, Any]:
    """One service's view: its operations and the channels, messages and schemas they use."""
    own = [op for op in operations() if op.service == name]
    if not own:
        raise KeyError(f"no operations for service {name!r}")
    return _document(
        own,
        title=f"ITSM {name} service events",
        version=version,
        description=f"The events the {name} service publishes and consumes on Kafka, as "
        "CloudEvents 1.0 in the Kafka protocol binding's binary mode.",
    )


def render(document: dict[str, Any]) -> str:
    """The document as the JSON text kept in docs/ (indented, stable)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _document(
    ops: Sequence[Operation], *, title: str, version: str, description: str
) -> dict[str, Any]:
    topics = [t for t in TOPICS if any(op.topic == t for op in ops)]
    schemas: dict[str, Any] = {HEADERS_SCHEMA: header_schemas()}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for topic in topics:
        channel_messages: dict[str, Any] = {}
        if topic == DEAD_LETTER_TOPIC:
            messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
            channel_messages[DEAD_LETTER_MESSAGE] = _ref("messages", DEAD_LETTER_MESSAGE)
        for spec in sorted(CATALOGUE.values(), key=lambda s: s.type):
            if spec.topic == topic:
                messages[spec.type] = _message(spec, schemas)
                channel_messages[spec.type] = _ref("messages", spec.type)
        channels[topic] = _channel(topic, channel_messages)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": {op.key: _operation(op, channels[op.topic]) for op in ops},
        "components": {"messages": messages, "schemas": schemas},
    }
    return document


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{_pointer(name)}"}


def _pointer(name: str) -> str:
    # JSON Pointer escaping (RFC 6901): a `/` in a name would split it.
    return name.replace("~", "~0").replace("/", "~1")


def _channel(topic: str, channel_messages: dict[str, Any]) -> dict[str, Any]:
    owners = sorted(
        {s.source.removeprefix("itsm/") for s in CATALOGUE.values() if s.topic == topic}
    )
    description = _TOPIC_DESCRIPTIONS.get(topic) or (
        f"Events of the {', '.join(owners)} service, keyed by their subject: the events of one "
        "aggregate stay in one partition, in the order they were committed."
    )
    cleanup = TOPIC_CONFIGS.get(topic, {}).get("cleanup.policy", "delete")
    return {
        "address": topic,
        "title": topic,
        "description": description,
        "messages": channel_messages,
        "bindings": {
            "kafka": {
                "topic": topic,
                "partitions": TOPICS[topic],
                "topicConfiguration": {"cleanup.policy": cleanup.split(",")},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operation(op: Operation, channel: dict[str, Any]) -> dict[str, Any]:
    channel_ref = {"$ref": f"#/channels/{_pointer(op.topic)}"}
    return {
        "action": op.action,
        "channel": channel_ref,
        "summary": op.summary,
        "tags": [{"name": op.service}],
        "messages": [
            {"$ref": f"#/channels/{_pointer(op.topic)}/messages/{_pointer(name)}"}
            for name in channel["messages"]
        ],
    }


def _message(spec: EventSpec, schemas: dict[str, Any]) -> dict[str, Any]:
    doc = inspect.cleandoc(spec.model.__doc__ or "")
    name = spec.model.__name__
    _add_schema(schemas, name, spec.model.model_json_schema(ref_template=_SCHEMAS + "{model}"))
    message: dict[str, Any] = {
        "name": spec.type,
        "title": name,
        "contentType": CONTENT_TYPE,
        "headers": {
            "allOf": [
                {"$ref": _SCHEMAS + HEADERS_SCHEMA},
                {
                    "type": "object",
                    "properties": {
                        "ce_type": {"const": spec.type},
                        "ce_source": {"const": spec.source},
                    },
                },
            ]
        },
        "payload": {"$ref": _SCHEMAS + _pointer(name)},
        "correlationId": {
            "description": "The request that caused the event.",
            "location": "$message.header#/ce_correlationid",
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The event's subject (`ce_subject`): its aggregate.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    if doc:
        message["summary"] = doc.splitlines()[0]
    return message


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Put a model's schema and its nested models' (`$defs`) under components/schemas."""
    schema = copy.deepcopy(schema)
    nested = schema.pop("$defs", {})
    for key, value in [(name, schema), *nested.items()]:
        if key in schemas and schemas[key] != value:
            # Two catalogue models of one name would make one of them wrong in the document.
            raise ValueError(f"two different schemas named {key!r} in the event catalogue")
        schemas[key] = value


def header_schemas() -> dict[str, Any]:
    """The `ce_*` headers (and `content-type`) of every event, from the envelope's fields."""
    envelope = Envelope.model_json_schema()["properties"]
    # `data` is the message value; `datacontenttype` travels as `content-type` (the binding).
    attributes = [n for n in Envelope.model_fields if n not in ("data", "datacontenttype")]
    undescribed = set(attributes) ^ set(ATTRIBUTE_MEANINGS)
    if undescribed:
        raise ValueError(f"describe exactly the envelope's attributes: {sorted(undescribed)}")
    properties: dict[str, Any] = {
        "content-type": {"const": CONTENT_TYPE, "description": "The value is JSON."}
    }
    required = ["content-type"]
    for name in attributes:
        schema, optional = _as_header(envelope[name])
        properties[f"ce_{name}"] = {**schema, "description": ATTRIBUTE_MEANINGS[name]}
        if not optional:
            required.append(f"ce_{name}")
    return {
        "title": HEADERS_SCHEMA,
        "description": "CloudEvents attributes as Kafka headers (binary content mode), text in "
        "UTF-8. Other headers (tracing, a producer's own) may be present.",
        "type": "object",
        "required": required,
        "properties": properties,
    }


def _as_header(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A field's JSON Schema as a header value's (always text), and whether it may be absent."""
    optional = False
    if "anyOf" in schema:
        # An optional attribute (`X | None`) is left out rather than sent empty.
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        optional = len(branches) < len(schema["anyOf"])
        (schema,) = branches
    kept = {k: v for k, v in schema.items() if k not in ("title", "default", "description")}
    if kept.get("type") == "integer":
        if kept.get("minimum") != 1 or set(kept) - {"type", "minimum"}:
            raise ValueError(f"no header form for the integer schema {schema}")
        kept = {"type": "string", "pattern": "^[1-9][0-9]*$"}
    if "const" in kept:
        kept.setdefault("type", "string")
    return kept, optional


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER_MESSAGE,
        "title": "Dead letter",
        "summary": "A message a consumer could not apply, as it was read.",
        "headers": {
            "type": "object",
            "description": "The original message's headers, then these.",
            "required": list(DEAD_LETTER_HEADERS),
            "properties": {
                name: {"type": "string", "description": meaning}
                for name, meaning in DEAD_LETTER_HEADERS.items()
            },
        },
        "payload": {"description": "The original message's value, unchanged (any bytes)."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original message's key."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shared.events.asyncapi FILE [--check]`: write the document, or check it."""
    parser = argparse.ArgumentParser(prog="python -m shared.events.asyncapi")
    parser.add_argument("file", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if FILE is out of date")
    args = parser.parse_args(argv)
    text = render(platform_document())
    current = args.file.read_text() if args.file.exists() else None
    if args.check:
        if current != text:
            print(f"{args.file} is out of date: run `make asyncapi`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.file.write_text(text)
        print(f"wrote {args.file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
