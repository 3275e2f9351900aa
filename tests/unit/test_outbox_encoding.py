"""Encoding a batch of events for the outbox ahead of its transaction (bulk writers)."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared import outbox
from shared.events.binding import encode_json, header_map
from shared.events.catalogue import RelationshipAddedV1, RelationshipV1, spec_of


def added(n):
    relationship = RelationshipV1(id=f"r{n}", type="runs_on", source_id=f"s{n}", target_id=f"t{n}")
    return outbox.Pending(RelationshipAddedV1(relationship=relationship), f"r{n}", 1)


def encoded(*numbers):
    return outbox.encode_many(
        [added(n) for n in numbers], tenant_id="acme", actor="bot", correlation_id="c-1"
    )


def test_an_encoded_batch_carries_each_events_columns_in_order_and_the_shared_headers_once():
    batch = encoded(1, 2, 3)
    assert len(batch) == 3
    assert batch.subjects == ["r1", "r2", "r3"]
    assert set(batch.types) == {"itsm.config.relationship.added.v1"}
    assert [json.loads(p)["relationship"]["id"] for p in batch.payloads] == ["r1", "r2", "r3"]
    shared = json.loads(batch.shared)
    assert (shared["ce_tenantid"], shared["ce_actor"]) == ("acme", "bot")


def test_an_encoded_batch_draws_distinct_time_ordered_event_ids_in_the_batchs_order():
    batch = encoded(1, 2, 3)
    assert len(set(batch.ids)) == 3
    assert batch.ids == sorted(batch.ids)
    assert {i.version for i in batch.ids} == {7}


def test_selecting_from_an_encoded_batch_keeps_the_chosen_events_whole_and_in_order():
    batch = encoded(1, 2, 3, 4)
    kept = batch.select([1, 3])
    assert kept.subjects == ["r2", "r4"]
    assert kept.ids == [batch.ids[1], batch.ids[3]]
    assert [json.loads(p)["relationship"]["source_id"] for p in kept.payloads] == ["s2", "s4"]
    assert len(kept.topics) == len(kept.sequences) == len(kept.sources) == 2
    assert (kept.tenant_id, kept.correlation_id) == ("acme", "c-1")


def test_an_event_the_outbox_cannot_carry_is_refused_while_encoding():
    bad = outbox.Pending(added(1).payload, "", 1)
    with pytest.raises(ValueError, match="subject"):
        outbox.encode_many([bad], tenant_id="acme", actor="bot")


def test_each_encoded_event_carries_its_full_kafka_headers_as_json():
    batch = encoded(1, 2)
    for i, text in enumerate(batch.headers):
        headers = json.loads(text)
        assert {k: headers[k] for k in json.loads(batch.shared)} == json.loads(batch.shared)
        assert headers["ce_id"] == str(batch.ids[i])
        assert headers["ce_subject"] == batch.subjects[i]
        assert headers["ce_type"] == "itsm.config.relationship.added.v1"
        assert headers["ce_source"] == batch.sources[i]
        assert headers["ce_itsmversion"] == "1"
        assert headers["ce_correlationid"] == "c-1"
    assert batch.select([1]).headers == [batch.headers[1]]


def test_without_a_correlation_id_an_event_correlates_with_itself_and_odd_subjects_survive():
    odd = 'sub "quoted" \\ é/ü'
    event = outbox.Pending(added(1).payload, odd, 3)
    batch = outbox.encode_many([event], tenant_id="acme", actor="bot")
    headers = json.loads(batch.headers[0])
    assert headers["ce_correlationid"] == headers["ce_id"] == str(batch.ids[0])
    assert (headers["ce_subject"], headers["ce_itsmversion"]) == (odd, "3")


class RecordingConnection:
    """A connection inside a transaction that keeps what the outbox asks it to execute."""

    def __init__(self):
        self.executed = []

    def is_in_transaction(self):
        return True

    async def execute(self, query, *args):
        self.executed.append((query, args))


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def test_append_writes_the_very_bytes_append_many_writes_for_the_same_event(monkeypatch):
    event_id = uuid.UUID("01900000-0000-7000-8000-000000000001")
    monkeypatch.setattr(outbox.writer, "new_ids", lambda n: [event_id] * n)
    monkeypatch.setattr(outbox.writer, "datetime", FrozenClock)
    one, many = RecordingConnection(), RecordingConnection()
    event = added(7)
    context = {"tenant_id": "acme", "actor": "bot", "causation_id": "cause-1"}

    envelope = await outbox.append(
        one, event.payload, subject=event.subject, sequence=event.sequence, **context
    )
    ids = await outbox.append_many(many, [event], **context)

    assert one.executed == many.executed
    [(_, (tenant, topics, subjects, types, headers, payloads, written_ids))] = one.executed
    assert (tenant, written_ids, ids) == ("acme", [event_id], [event_id])
    # What append returns is the event it wrote: its id, time and headers are the row's.
    assert json.loads(headers[0]) == header_map(envelope)
    assert json.loads(headers[0])["ce_itsmversion"] == "1"
    assert payloads == [encode_json(envelope.data)]
    spec = spec_of(event.payload)
    assert (topics, subjects, types) == ([spec.topic], ["r7"], [spec.type])
