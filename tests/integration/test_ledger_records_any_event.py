"""The ledger records any valid event Kafka carries, byte for byte (finding 6, ledger side).

Events come from a raw aiokafka producer on the real broker, in the CloudEvents Kafka binding
(binary mode) the platform uses: other producers exist, and the HTTP edge refusing NUL does
not protect the ledger from them.
"""

import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.reporting.adapters.ledger import decode_headers
from shared.events.binding import to_kafka
from shared.events.catalogue import INCIDENT_EVENTS
from shared.events.envelope import new_envelope
from shared.kafka import DEAD_LETTER_TOPIC
from tests.support import (
    end_offsets,
    eventually,
    fetch_as,
    header,
    incident_event,
    read_topic,
    sample_value,
)

NUL = "\u0000"


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


def events_with_nul(tenant):
    """The three actions of the finding, and an incident, with NUL in several strings."""
    created = incident_event(
        tenant, title=f"audit{NUL}gap", description=f"{NUL}starts, ends{NUL}", category=NUL
    )
    transitioned = new_envelope(
        source="itsm/incident",
        type="itsm.incident.request.transitioned.v1",
        subject=str(uuid.uuid4()),
        tenantid=tenant,
        itsmversion=3,
        actor="alice",
        data={"from_state": "in_fulfilment", "to_state": "fulfilled", "notes": f"done{NUL}"},
    )
    change_requested = new_envelope(
        source="itsm/incident",
        type="itsm.incident.problem.change_requested.v1",
        subject=str(uuid.uuid4()),
        tenantid=tenant,
        itsmversion=2,
        actor="bob",
        data={
            "request_id": str(uuid.uuid4()),
            "title": f"patch{NUL}{NUL}",
            "description": "x",
            "ci_ids": [f"ci{NUL}1"],
            "a key with NUL\u0000": {"nested": NUL},  # not in the model: kept all the same
        },
    )
    removed = new_envelope(
        source="itsm/config",
        type="itsm.config.relationship.removed.v1",
        subject=str(uuid.uuid4()),
        tenantid=tenant,
        itsmversion=2,
        actor="carol",
        data={
            "relationship": {
                "id": str(uuid.uuid4()),
                "type": "depends_on",
                "source_id": str(uuid.uuid4()),
                "target_id": str(uuid.uuid4()),
            },
            "reason": f"audit{NUL}gap",
        },
    )
    return [created, transitioned, change_requested, removed]


async def ledger_rows(pools, tenant):
    return await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT event_id, version, data, data_sanitized, topic, partition, kafka_offset,"
        " message_key, message_value, message_headers FROM ledger ORDER BY position",
    )


async def test_an_event_with_nul_in_its_data_is_recorded_byte_for_byte_and_served_as_sent(
    service_client, pools, raw_producer, auth, tenant
):
    reporting = await service_client("reporting")
    sent = {}
    for envelope in events_with_nul(tenant):
        wire = to_kafka(envelope)
        # Headers the binding does not define may hold any bytes; they are part of the record.
        headers = [*wire.headers, ("x-producer-trace", b"\x00\xff\x01")]
        topic = "itsm.config.events" if envelope.source == "itsm/config" else INCIDENT_EVENTS
        await raw_producer.send_and_wait(topic, wire.value, key=wire.key, headers=headers)
        sent[envelope.id] = (envelope, wire, headers)

    rows = await eventually(lambda: ledger_rows(pools, tenant), lambda rows: len(rows) == 4)

    for row in rows:
        envelope, wire, headers = sent[row["event_id"]]
        assert b"\\u0000" in wire.value
        assert row["message_value"] == wire.value
        assert row["message_key"] == wire.key
        assert decode_headers(row["message_headers"]) == headers
        assert row["version"] == envelope.itsmversion
        # The jsonb copy for queries cannot hold U+0000: sanitized, and marked so.
        assert row["data_sanitized"] is True
        assert NUL not in json.dumps(row["data"], ensure_ascii=False)
        assert "\ufffd" in json.dumps(row["data"], ensure_ascii=False)

    response = await reporting.get("/ledger", headers=auth(tenant, "auditor"))
    assert response.status_code == 200
    served = {uuid.UUID(item["event_id"]): item for item in response.json()["items"]}
    assert set(served) == set(sent)
    for event_id, (envelope, _, _) in sent.items():
        assert served[event_id]["data"] == envelope.data
        assert served[event_id]["version"] == served[event_id]["sequence"] == envelope.itsmversion
    assert dead_letter_count(reporting.runtime) == 0


def dead_letter_count(runtime):
    labels = {"consumer": "reporting-ledger"}
    return sample_value(runtime.registry, "itsm_dead_lettered_total", labels)


async def test_an_event_carrying_its_version_in_the_old_sequence_attribute_is_recorded(
    start_runtime, pools, raw_producer, tenant
):
    await start_runtime("reporting")
    envelope = incident_event(tenant)
    wire = to_kafka(envelope)
    headers = [("ce_sequence" if k == "ce_itsmversion" else k, v) for k, v in wire.headers]
    await raw_producer.send_and_wait(INCIDENT_EVENTS, wire.value, key=wire.key, headers=headers)

    [row] = await eventually(lambda: ledger_rows(pools, tenant), lambda rows: len(rows) == 1)
    assert (row["event_id"], row["version"], row["data_sanitized"]) == (envelope.id, 1, False)
    assert decode_headers(row["message_headers"]) == headers


async def test_genuinely_invalid_events_still_go_to_the_dead_letter_topic_with_a_reason(
    infra, start_runtime, pools, raw_producer, tenant
):
    reporting = await start_runtime("reporting")
    start = await end_offsets(infra.bootstrap_servers, DEAD_LETTER_TOPIC)
    # The CloudEvents spec forbids control characters in attribute values: not a CloudEvent.
    nul_subject = incident_event(tenant)
    wire = to_kafka(nul_subject)
    key_1 = f"nul-subject-{uuid.uuid4()}".encode()
    bad_subject = [(k, b"a\x00b" if k == "ce_subject" else v) for k, v in wire.headers]
    await raw_producer.send_and_wait(INCIDENT_EVENTS, wire.value, key=key_1, headers=bad_subject)
    # NaN is not JSON.
    key_2 = f"nan-{uuid.uuid4()}".encode()
    not_json = to_kafka(incident_event(tenant))
    await raw_producer.send_and_wait(
        INCIDENT_EVENTS, b'{"title": NaN}', key=key_2, headers=not_json.headers
    )
    # A good event after them is recorded: the consumer kept going.
    good = incident_event(tenant, title=f"after{NUL}")
    wire_good = to_kafka(good)
    await raw_producer.send_and_wait(
        INCIDENT_EVENTS, wire_good.value, key=wire_good.key, headers=wire_good.headers
    )

    dead = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: {key_1, key_2} <= {r.key for r in rs},
    )
    reasons = {r.key: header(r, "dlq_reason") for r in dead if r.key in {key_1, key_2}}
    assert reasons == {key_1: "invalid-envelope", key_2: "malformed-data"}
    details = {r.key: header(r, "dlq_detail") for r in dead if r.key in {key_1, key_2}}
    assert "subject" in details[key_1]
    assert "NaN" in details[key_2]
    [row] = await eventually(lambda: ledger_rows(pools, tenant), lambda rows: len(rows) == 1)
    assert row["event_id"] == good.id
    assert dead_letter_count(reporting) >= 2
