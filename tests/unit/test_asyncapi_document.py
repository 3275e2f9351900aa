"""The event contract as an AsyncAPI 3.0 document (shared/events/asyncapi.py): generated from the
event catalogue and the service registry, kept in docs/asyncapi.json, served by each service at
/asyncapi.json, and true to what the Kafka binding puts on the wire.

The AsyncAPI project's own parser validates the documents in
tests/integration/test_asyncapi_validation.py.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from shared.auth.local import LocalKeys
from shared.events.asyncapi import (
    DEAD_LETTER_HEADERS,
    HEADERS_SCHEMA,
    main,
    platform_document,
    render,
    service_document,
)
from shared.events.binding import header_map, to_kafka
from shared.events.catalogue import (
    AUTH_REVOCATIONS,
    CATALOGUE,
    ChangeImplementedV1,
    EventPayload,
    IncidentCreatedV1,
    TokenRevokedV1,
    revocation_subject,
    spec_of,
)
from shared.events.envelope import new_envelope
from shared.events.topics import REPORTING_EVENTS
from shared.kafka import DEAD_LETTER_TOPIC, TOPICS
from shared.registry import SERVICE_NAMES, SERVICES
from shared.service import build_app
from tests.conftest import DEFINITIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_FILE = REPO_ROOT / "docs" / "asyncapi.json"
DOCUMENT = platform_document()


def test_docs_asyncapi_json_is_what_the_catalogue_and_the_registry_generate():
    assert DOCUMENT_FILE.read_text() == render(DOCUMENT), (
        "docs/asyncapi.json is out of date: run `make asyncapi` and review the diff"
    )


def test_the_check_command_refuses_a_document_that_is_out_of_date(tmp_path, capsys):
    stale = tmp_path / "asyncapi.json"
    stale.write_text(render(DOCUMENT).replace("itsm.incident.created.v1", "itsm.incident.old.v1"))
    assert main([str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main([str(stale)]) == 0
    assert main([str(stale), "--check"]) == 0
    assert stale.read_text() == render(DOCUMENT)


def test_the_document_is_asyncapi_3_0():
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert DOCUMENT["defaultContentType"] == "application/json"


def test_the_channels_are_the_kafka_topics_with_their_partitions_and_cleanup_policy():
    channels = DOCUMENT["channels"]
    assert set(channels) == set(TOPICS)
    for topic, channel in channels.items():
        kafka = channel["bindings"]["kafka"]
        assert channel["address"] == kafka["topic"] == topic
        assert kafka["partitions"] == TOPICS[topic]
    revocations = channels[AUTH_REVOCATIONS]["bindings"]["kafka"]
    assert revocations["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_every_catalogued_event_type_is_one_message_on_its_topics_channel():
    messages = DOCUMENT["components"]["messages"]
    assert set(messages) == set(CATALOGUE) | {"deadletter"}
    for spec in CATALOGUE.values():
        channel = DOCUMENT["channels"][spec.topic]
        assert channel["messages"][spec.type] == {"$ref": f"#/components/messages/{spec.type}"}
        payload = messages[spec.type]["payload"]["$ref"]
        assert payload == f"#/components/schemas/{spec.model.__name__}"
        assert DOCUMENT["components"]["schemas"][spec.model.__name__]["title"] == (
            spec.model.__name__
        )
    listed = {name for c in DOCUMENT["channels"].values() for name in c["messages"]}
    assert listed == set(messages)


def test_each_service_sends_where_its_events_go_and_receives_what_the_registry_says():
    for entry in SERVICES:
        own = {
            key: op
            for key, op in DOCUMENT["operations"].items()
            if op["tags"][0]["name"] == entry.name
        }
        sent = {
            op["channel"]["$ref"].removeprefix("#/channels/")
            for op in own.values()
            if op["action"] == "send"
        }
        received = {
            op["channel"]["$ref"].removeprefix("#/channels/")
            for op in own.values()
            if op["action"] == "receive"
        }
        publishes = {s.topic for s in CATALOGUE.values() if s.source == f"itsm/{entry.name}"}
        dead_letters = {DEAD_LETTER_TOPIC} if entry.consumes else set()
        assert sent == publishes | dead_letters, entry.name
        # Every process follows the revocations, besides what its consumers read.
        assert received == set(entry.consumes) | {AUTH_REVOCATIONS}, entry.name
    # The config service writes the revocations through its outbox too.
    assert "config.publish.itsm.auth.revocations" in DOCUMENT["operations"]


def test_an_operation_lists_every_message_of_its_channel():
    for key, op in DOCUMENT["operations"].items():
        topic = op["channel"]["$ref"].removeprefix("#/channels/")
        listed = [m["$ref"].rsplit("/", 1)[1] for m in op["messages"]]
        assert listed == list(DOCUMENT["channels"][topic]["messages"]), key


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for k, v in node.items() if k != "$ref" for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("name", [None, *SERVICE_NAMES], ids=["platform", *SERVICE_NAMES])
def test_every_reference_resolves_and_every_component_is_used(name):
    document = DOCUMENT if name is None else service_document(name)
    refs = _refs(document)
    for ref in refs:
        _resolve(document, ref)
    for kind, components in document["components"].items():
        for component in components:
            assert f"#/components/{kind}/{component}" in refs, (name, kind, component)


def test_a_services_view_holds_its_operations_and_only_the_channels_they_use():
    change = service_document("change", version="9.9.9")
    assert change["info"]["version"] == "9.9.9"
    assert set(change["operations"]) == {
        "change.publish.itsm.change.events",
        "change.consume.itsm.config.events",
        "change.consume.itsm.incident.events",
        "change.dead-letter.itsm.deadletter",
        "change.follow.itsm.auth.revocations",
    }
    config = service_document("config")
    # It consumes the change events for its projection of changes (change control).
    assert set(config["channels"]) == {
        "itsm.config.events",
        "itsm.change.events",
        DEAD_LETTER_TOPIC,
        AUTH_REVOCATIONS,
    }
    assert "itsm.incident.created.v1" not in config["components"]["messages"]
    reporting = service_document("reporting")
    assert set(reporting["channels"]) == set(TOPICS)
    # It sends only its own ledger events and what it dead-letters; it receives everything.
    assert {
        op["channel"]["$ref"].rsplit("/", 1)[-1]
        for op in reporting["operations"].values()
        if op["action"] == "send"
    } == {REPORTING_EVENTS, DEAD_LETTER_TOPIC}


def test_a_service_that_is_not_registered_has_no_view():
    with pytest.raises(KeyError, match="billing"):
        service_document("billing")


# --- The document says what the binding writes ------------------------------------------------

_REGISTRY = Registry().with_resource(
    "urn:itsm:asyncapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT7)
)


def _validator(pointer: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(
        {"$ref": f"urn:itsm:asyncapi{pointer}"},
        registry=_REGISTRY,
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )


def _errors(pointer: str, instance: Any) -> list[str]:
    return [error.message for error in _validator(pointer).iter_errors(instance)]


def _record(payload: EventPayload, subject: str, **extra: Any) -> tuple[dict[str, str], Any, str]:
    spec = spec_of(payload)
    envelope = new_envelope(
        source=spec.source,
        type=spec.type,
        subject=subject,
        tenantid="acme",
        itsmversion=12,
        actor="alice",
        data=payload.model_dump(mode="json"),
        **extra,
    )
    record = to_kafka(envelope)
    headers = {name: value.decode() for name, value in record.headers}
    return headers, json.loads(record.value), record.key.decode()


INCIDENT = IncidentCreatedV1(
    title="Mail is down",
    description="",
    impact=1,
    urgency=2,
    priority=2,
    state="new",
    number=42,
)
CHANGE = ChangeImplementedV1(
    change_id="chg-1",
    title="Upgrade the mail relay",
    ci_ids=[str(uuid.uuid4())],
    implemented_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
)
REVOKED = TokenRevokedV1(token_id="jti-1", reason="laptop lost")


@pytest.mark.parametrize(
    ("payload", "subject", "extra"),
    [
        (INCIDENT, str(uuid.uuid4()), {}),
        (INCIDENT, str(uuid.uuid4()), {"causationid": str(uuid.uuid4()), "correlationid": "req-7"}),
        (CHANGE, "chg-1", {}),
        (REVOKED, revocation_subject("acme", "jti-1"), {}),
    ],
    ids=[
        "incident-created",
        "incident-created-as-a-reaction",
        "change-implemented",
        "token-revoked",
    ],
)
def test_a_record_the_kafka_binding_encodes_matches_its_message_in_the_document(
    payload, subject, extra
):
    spec = spec_of(payload)
    headers, value, key = _record(payload, subject, **extra)
    message = f"#/components/messages/{spec.type}"
    assert _errors(f"{message}/headers", headers) == []
    assert _errors(f"{message}/payload", value) == []
    assert _errors(f"{message}/bindings/kafka/key", key) == []
    assert key == headers["ce_subject"]


def test_the_documented_headers_are_exactly_those_the_binding_writes():
    envelope = new_envelope(
        source="itsm/incident",
        type="itsm.incident.created.v1",
        subject="x",
        tenantid="acme",
        itsmversion=1,
        actor="alice",
        data={},
        causationid="y",
    )
    documented = DOCUMENT["components"]["schemas"][HEADERS_SCHEMA]["properties"]
    assert set(documented) == set(header_map(envelope))
    required = set(DOCUMENT["components"]["schemas"][HEADERS_SCHEMA]["required"])
    assert set(documented) - required == {"ce_causationid"}


def test_a_record_of_another_type_or_missing_a_header_or_field_does_not_match():
    headers, value, _ = _record(INCIDENT, "inc-1")
    created = "#/components/messages/itsm.incident.created.v1"
    # The message of another type: its ce_type and ce_source are not these.
    assert _errors("#/components/messages/itsm.change.implemented.v1/headers", headers)
    assert _errors(f"{created}/headers", {k: v for k, v in headers.items() if k != "ce_tenantid"})
    assert _errors(f"{created}/headers", {**headers, "ce_itsmversion": "0"})
    assert _errors(f"{created}/headers", {**headers, "ce_subject": "x" * 201})
    assert _errors(f"{created}/payload", {k: v for k, v in value.items() if k != "title"})
    assert _errors(f"{created}/payload", {**value, "impact": 4})


def test_the_dead_letter_headers_are_those_the_inbox_writes():
    # The consumer writes them by name (shared/inbox.py today); the document lists each one.
    written = {
        name
        for module in (REPO_ROOT / "shared").rglob("*.py")
        if module.name != "asyncapi.py"
        for name in re.findall(r'"(dlq_[a-z_]+)"', module.read_text())
    }
    assert written == set(DEAD_LETTER_HEADERS)


# --- Served by each service -------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_each_service_serves_its_own_view_at_asyncapi_json_without_a_token(name, tmp_path):
    definition = DEFINITIONS[name]
    app = build_app(definition, _settings(definition, tmp_path))
    # No lifespan: the document needs neither the database nor Kafka.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        answer = await client.get("/asyncapi.json")
        openapi = (await client.get("/openapi.json")).json()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == service_document(name, version=definition.version)
    listed = openapi["paths"]["/asyncapi.json"]["get"]
    assert "security" not in listed
    assert listed["tags"] == ["operations"]


def _settings(definition: Any, tmp_path: Path) -> Any:
    keys = LocalKeys(tmp_path / "auth")
    keys.issuer()  # writes the JWKS the runtime reads
    return definition.settings_class(
        database_url="postgresql://nobody@127.0.0.1:9/none",
        kafka_bootstrap_servers="127.0.0.1:9",
        auth_jwks_file=keys.jwks_file,
    )
