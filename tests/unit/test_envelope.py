import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events.binding import DecodeError, from_kafka, parse_payload, to_kafka
from shared.events.catalogue import IncidentCreatedV1
from shared.events.envelope import new_envelope


def make(**overrides):
    fields = dict(
        source="itsm/incident",
        type="itsm.incident.created.v1",
        subject=str(uuid.uuid4()),
        tenantid="acme",
        sequence=1,
        actor="alice",
        data={
            "title": "Mail down",
            "description": "",
            "impact": 1,
            "urgency": 2,
            "priority": 2,
            "state": "new",
        },
    )
    fields.update(overrides)
    return new_envelope(**fields)


def test_envelope_survives_the_kafka_binding_unchanged():
    envelope = make(causationid="cause-1", correlationid="corr-1")
    record = to_kafka(envelope)
    assert from_kafka(record.value, record.headers) == envelope


def test_the_aggregate_id_is_the_message_key():
    envelope = make()
    assert to_kafka(envelope).key == envelope.subject.encode()


def test_binary_mode_headers_carry_every_attribute_and_extension():
    record = to_kafka(make())
    names = {name for name, _ in record.headers}
    assert {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time"} <= names
    assert {"ce_tenantid", "ce_sequence", "ce_correlationid", "ce_actor"} <= names
    assert ("content-type", b"application/json") in record.headers
    assert json.loads(record.value)["title"] == "Mail down"


def test_a_new_event_is_its_own_correlation_root():
    envelope = make()
    assert envelope.correlationid == str(envelope.id)
    assert envelope.causationid is None


@given(
    tenant=st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    sequence=st.integers(min_value=1, max_value=2**53),
    actor=st.text(min_size=1, max_size=50).filter(lambda s: s.strip() == s and s),
    data=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()),
        max_size=5,
    ),
)
def test_any_valid_envelope_round_trips(tenant, sequence, actor, data):
    envelope = make(tenantid=tenant, sequence=sequence, actor=actor, data=data)
    record = to_kafka(envelope)
    assert from_kafka(record.value, record.headers) == envelope


def test_a_message_without_cloudevents_headers_is_not_an_event():
    with pytest.raises(DecodeError) as err:
        from_kafka(b"{}", [])
    assert err.value.reason == "not-a-cloudevent"


def test_a_value_that_is_not_json_is_malformed():
    record = to_kafka(make())
    with pytest.raises(DecodeError) as err:
        from_kafka(b"{not json", record.headers)
    assert err.value.reason == "malformed-data"


def test_a_missing_tenant_makes_an_invalid_envelope_naming_the_attribute():
    record = to_kafka(make())
    headers = [(k, v) for k, v in record.headers if k != "ce_tenantid"]
    with pytest.raises(DecodeError) as err:
        from_kafka(record.value, headers)
    assert err.value.reason == "invalid-envelope"
    assert "tenantid" in err.value.detail


def test_an_unknown_type_is_reported_as_such():
    with pytest.raises(DecodeError) as err:
        parse_payload(make(type="itsm.incident.teleported.v1"))
    assert err.value.reason == "unknown-event-type"


def test_a_payload_that_breaks_its_model_names_the_field():
    with pytest.raises(DecodeError) as err:
        parse_payload(
            make(
                data={
                    "title": "x",
                    "description": "",
                    "impact": 9,
                    "urgency": 1,
                    "priority": 1,
                    "state": "new",
                }
            )
        )
    assert err.value.reason == "invalid-payload"
    assert "impact" in err.value.detail


def test_payloads_ignore_fields_added_by_a_newer_producer():
    payload = parse_payload(
        make(
            data={
                "title": "x",
                "description": "",
                "impact": 1,
                "urgency": 1,
                "priority": 1,
                "state": "new",
                "added_later": 1,
            }
        )
    )
    assert isinstance(payload, IncidentCreatedV1)


def test_envelope_time_must_carry_a_time_zone():
    with pytest.raises(ValueError):
        make(time=datetime(2026, 1, 1))  # naive
    assert make(time=datetime(2026, 1, 1, tzinfo=UTC)).time.tzinfo is not None
