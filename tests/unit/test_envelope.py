import json
import re
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
        itsmversion=1,
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
    assert {"ce_tenantid", "ce_itsmversion", "ce_correlationid", "ce_actor"} <= names
    assert ("content-type", b"application/json") in record.headers
    assert json.loads(record.value)["title"] == "Mail down"


def test_a_new_event_is_its_own_correlation_root():
    envelope = make()
    assert envelope.correlationid == str(envelope.id)
    assert envelope.causationid is None


@given(
    tenant=st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    version=st.integers(min_value=1, max_value=2**53),
    actor=st.text(min_size=1, max_size=50).filter(
        lambda s: (
            s.strip() == s and s and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in s)
        )
    ),
    data=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()),
        max_size=5,
    ),
)
def test_any_valid_envelope_round_trips(tenant, version, actor, data):
    envelope = make(tenantid=tenant, itsmversion=version, actor=actor, data=data)
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


# --- The aggregate version: `itsmversion`, not CloudEvents `sequence` (finding 15) ------------


def as_written_before_itsmversion(headers):
    """The headers of an event written before `itsmversion`: the version in `ce_sequence`."""
    return [("ce_sequence" if k == "ce_itsmversion" else k, v) for k, v in headers]


def test_the_aggregate_version_travels_in_itsmversion_and_sequence_is_not_sent():
    record = to_kafka(make(itsmversion=10))
    headers = dict(record.headers)
    assert headers["ce_itsmversion"] == b"10"
    assert "ce_sequence" not in headers


def test_an_event_carrying_only_the_old_sequence_attribute_still_decodes_with_its_version():
    envelope = make(itsmversion=7)
    record = to_kafka(envelope)
    assert from_kafka(record.value, as_written_before_itsmversion(record.headers)) == envelope


def test_itsmversion_wins_over_a_sequence_another_producer_sets_per_the_spec():
    record = to_kafka(make(itsmversion=3))
    headers = [*record.headers, ("ce_sequence", b"0000000000000042")]
    assert from_kafka(record.value, headers).itsmversion == 3


def test_an_event_with_no_version_in_either_form_is_an_invalid_envelope():
    record = to_kafka(make())
    headers = [(k, v) for k, v in record.headers if k != "ce_itsmversion"]
    with pytest.raises(DecodeError) as err:
        from_kafka(record.value, headers)
    assert err.value.reason == "invalid-envelope"
    assert "itsmversion" in err.value.detail


def test_the_extension_name_is_a_valid_cloudevents_attribute_name():
    # CloudEvents 1.0: lower-case ASCII letters or digits, at most 20 characters (advised).
    assert re.fullmatch(r"[a-z0-9]{1,20}", "itsmversion")


# --- What makes a message not an event: per the spec, not per the ledger's storage ----------


@pytest.mark.parametrize("attribute", ["ce_subject", "ce_actor", "ce_tenantid", "ce_correlationid"])
@pytest.mark.parametrize("character", ["\x00", "\n", "\x7f", "\x9f"])
def test_a_control_character_in_an_attribute_makes_an_invalid_envelope(attribute, character):
    record = to_kafka(make())
    headers = [(k, f"a{character}b".encode() if k == attribute else v) for k, v in record.headers]
    with pytest.raises(DecodeError) as err:
        from_kafka(record.value, headers)
    assert err.value.reason == "invalid-envelope"
    assert attribute.removeprefix("ce_") in err.value.detail


def test_nul_characters_in_data_strings_are_valid_json_and_decode_unchanged():
    data = {
        "title": "audit\u0000gap",
        "description": "\u0000",
        "impact": 1,
        "urgency": 1,
        "priority": 1,
        "state": "new",
        "k\u0000ey": ["\u0000"],
    }
    envelope = make(data=data)
    record = to_kafka(envelope)
    assert b"\\u0000" in record.value
    decoded = from_kafka(record.value, record.headers)
    assert decoded.data == data
    assert isinstance(parse_payload(decoded), IncidentCreatedV1)


@pytest.mark.parametrize(
    "value",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": ' + b"9" * 5000 + b"}",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["nan", "infinity", "integer-beyond-int-parsing", "nesting-beyond-the-parser"],
)
def test_values_python_cannot_take_as_json_are_malformed_data_not_a_crash(value):
    record = to_kafka(make())
    with pytest.raises(DecodeError) as err:
        from_kafka(value, record.headers)
    assert err.value.reason == "malformed-data"


def test_a_generic_cloudevents_consumer_reads_the_version_extension_and_no_sequence():
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

    envelope = make(itsmversion=12)
    record = to_kafka(envelope)
    event = from_binary_event(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    )
    assert (event.get_id(), event.get_subject()) == (str(envelope.id), envelope.subject)
    assert event.get_extension("itsmversion") == "12"
    assert event.get_extension("sequence") is None
    assert event.get_data()["title"] == "Mail down"


def test_headers_that_are_not_the_bindings_may_hold_any_bytes():
    envelope = make()
    record = to_kafka(envelope)
    headers = [*record.headers, ("x-producer-trace", b"\x00\xff\xfe"), ("x-null", None)]
    assert from_kafka(record.value, headers) == envelope


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"])
def test_a_time_with_no_instant_in_utc_makes_an_invalid_envelope_not_a_failing_consumer(time):
    record = to_kafka(make())
    headers = [(k, time.encode() if k == "ce_time" else v) for k, v in record.headers]
    with pytest.raises(DecodeError) as err:
        from_kafka(record.value, headers)
    assert err.value.reason == "invalid-envelope"
    assert "time" in err.value.detail
