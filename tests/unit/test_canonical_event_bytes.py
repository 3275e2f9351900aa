"""An event's canonical bytes: RFC 8785 (JCS) JSON of the structured CloudEvent, every attribute
a string member and the Kafka value byte for byte as `data_base64`."""

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from services.reporting.verifier import canonical_bytes, canonical_json, canonical_of_record
from shared.events.binding import to_kafka
from shared.events.envelope import new_envelope

# The string of RFC 8785 §3.2.2 and its serialization as UTF-8 (hex, from the JCS reference
# implementation's README, cyberphone/json-canonicalization).
RFC_STRING = json.loads(r'"\u20ac$\u000F\u000aA\u0027\u0042\u0022\u005c\\\"\/"')
RFC_STRING_HEX = "22 e2 82 ac 24 5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22"

# The reference implementation's test data whose members are all strings (input, output).
WEIRD_INPUT = (
    '{"\\u20ac": "Euro Sign", "1": "One", "\\u0080": "Control\\u007f",'
    ' "\\ud83d\\ude02": "Smiley", "\\u00f6": "Latin Small Letter O With Diaeresis",'
    ' "\\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}'
)
WEIRD_OUTPUT = (
    '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
    '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
)
FRENCH_INPUT = (
    '{"peach": "This sorting order", "p\u00e9ch\u00e9": "is wrong according to French",'
    ' "p\u00eache": "but canonicalization MUST", "sin": "ingnore locale"}'
)
FRENCH_OUTPUT = (
    '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
    '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}'
)


def test_a_string_is_escaped_as_rfc_8785_shows():
    expected = b'{"s":' + bytes.fromhex(RFC_STRING_HEX) + b"}"
    assert canonical_json({"s": RFC_STRING}) == expected


def test_members_are_sorted_by_utf16_code_units_not_code_points():
    # U+1F602 (a surrogate pair, 0xD83D...) sorts before U+FB33 in UTF-16, after it by code point.
    assert canonical_json(json.loads(WEIRD_INPUT)) == WEIRD_OUTPUT.encode()


def test_sorting_ignores_locale():
    assert canonical_json(json.loads(FRENCH_INPUT)) == FRENCH_OUTPUT.encode()


def test_unicode_is_not_normalized():
    assert canonical_json({"Unnormalized Unicode": "\u1e0d\u0307"}) == (
        '{"Unnormalized Unicode":"\u1e0d\u0307"}'.encode()
    )


def test_controls_use_the_short_escapes_and_lowercase_u_escapes():
    text = "".join(chr(c) for c in range(0x20)) + "\x7f\u2028"
    out = canonical_json({"c": text}).decode()
    assert out == (
        '{"c":"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019"
        '\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\x7f\u2028"}'
    )


def test_a_lone_surrogate_is_escaped_as_well_formed_json_stringify_does():
    assert canonical_json({"s": "a\udc80b"}) == b'{"s":"a\\udc80b"}'


def test_the_value_is_carried_byte_for_byte_as_data_base64():
    value = b'{"note":"nul \x00 here"}\x00\xff\xfe not even UTF-8'
    out = canonical_bytes({"id": "1", "type": "t"}, value)
    assert out == (b'{"data_base64":"' + base64.b64encode(value) + b'","id":"1","type":"t"}')


def test_an_attribute_named_data_base64_is_refused_as_no_cloudevents_name():
    try:
        canonical_bytes({"data_base64": "x"}, b"")
    except ValueError as exc:
        assert "data_base64" in str(exc)
    else:
        raise AssertionError("accepted")


attribute_names = st.text(min_size=1, max_size=12).filter(lambda n: n != "data_base64")
# Any code point, lone surrogates included: what decoding odd header bytes can produce.
any_text = st.text(st.characters(exclude_categories=()), max_size=30)


@given(
    st.dictionaries(any_text.filter(lambda n: n != "data_base64"), any_text, max_size=8),
    st.binary(max_size=64),
)
def test_any_event_has_canonical_bytes_that_give_it_back(attributes, value):
    out = canonical_bytes(attributes, value)
    parsed = json.loads(out)
    assert base64.b64decode(parsed.pop("data_base64")) == value
    assert parsed == attributes
    names = list(json.loads(out))
    assert names == sorted(names, key=lambda n: n.encode("utf-16-be", "surrogatepass"))


@given(st.dictionaries(attribute_names, st.text(max_size=20), max_size=5), st.binary(max_size=16))
def test_without_surrogates_it_is_what_a_json_encoder_writes(attributes, value):
    # For text without astral or lone-surrogate characters, JCS's order and escapes are
    # Python's sorted, compact, non-ASCII JSON.
    members = {**attributes, "data_base64": base64.b64encode(value).decode()}
    if any(ord(c) > 0xD7FF for text in members.items() for part in text for c in part):
        return
    expected = json.dumps(members, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert canonical_bytes(attributes, value) == expected.encode()


def test_a_record_counts_its_ce_headers_and_content_type_and_nothing_else():
    headers = [
        ("ce_id", b"7"),
        ("traceparent", b"00-abc"),
        ("content-type", b"application/json"),
        ("ce_type", b"itsm.x.y.v1"),
    ]
    assert canonical_of_record(headers, b"{}") == canonical_bytes(
        {"id": "7", "type": "itsm.x.y.v1", "datacontenttype": "application/json"}, b"{}"
    )


def test_a_record_of_the_binding_has_the_canonical_bytes_of_its_attributes():
    envelope = new_envelope(
        source="itsm/incident",
        type="itsm.incident.created.v1",
        subject="INC-1",
        tenantid="t1",
        itsmversion=1,
        actor="alice",
        data={"title": "nul \x00 and \u00e9"},
    )
    record = to_kafka(envelope)
    attributes = {
        name[3:]: value.decode() for name, value in record.headers if name != "content-type"
    }
    attributes["datacontenttype"] = "application/json"
    assert canonical_of_record(record.headers, record.value) == canonical_bytes(
        attributes, record.value
    )


def test_header_bytes_that_are_not_utf8_still_give_distinct_canonical_bytes():
    bad = canonical_of_record([("ce_id", b"\xff")], b"")
    other = canonical_of_record([("ce_id", b"\xfe")], b"")
    text = canonical_of_record([("ce_id", "\udcff".encode("utf-8", "surrogatepass"))], b"")
    assert len({bad, other, text}) == 3
    assert bad == b'{"data_base64":"","id":"\\udcff"}'


def test_a_repeated_header_counts_once_with_its_last_value_as_the_binding_reads_it():
    assert canonical_of_record([("ce_id", b"1"), ("ce_id", b"2")], b"") == canonical_bytes(
        {"id": "2"}, b""
    )


def test_a_null_header_and_a_ce_data_base64_header_carry_no_attribute():
    record = canonical_of_record([("ce_id", None), ("ce_data_base64", b"x")], b"v")
    assert record == canonical_bytes({}, b"v")


# The canonical JSON as first written: every string through the escape table, names sorted by
# their UTF-16 code units. The service's faster path (the C JSON encoder, a plain sort of ASCII
# names) must give the same bytes for anything.
_REFERENCE_ESCAPES = str.maketrans(
    {
        **{chr(c): f"\\u{c:04x}" for c in range(0x20)},
        **{"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"},
        **{'"': '\\"', "\\": "\\\\"},
        **{chr(c): f"\\u{c:04x}" for c in range(0xD800, 0xE000)},
    }
)


def _reference_canonical_json(members):
    def string(text):
        return '"' + text.translate(_REFERENCE_ESCAPES) + '"'

    names = sorted(members, key=lambda n: n.encode("utf-16-be", "surrogatepass"))
    return ("{" + ",".join(f"{string(n)}:{string(members[n])}" for n in names) + "}").encode()


def test_every_code_point_is_written_as_the_reference_writes_it():
    for start in range(0, 0x110000, 0x1000):
        text = "".join(chr(c) for c in range(start, min(start + 0x1000, 0x110000)))
        for members in ({"a": text}, {text[:40]: "x", "b": text[-40:]}):
            assert canonical_json(members) == _reference_canonical_json(members)


@given(st.dictionaries(any_text, any_text, max_size=8))
def test_canonical_json_is_the_reference_for_any_members(members):
    assert canonical_json(members) == _reference_canonical_json(members)


@given(st.dictionaries(st.text(st.characters(max_codepoint=0x7F), max_size=6), any_text))
def test_ascii_names_sort_as_the_reference_sorts_them(members):
    assert canonical_json(members) == _reference_canonical_json(members)
