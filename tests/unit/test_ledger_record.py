"""How the ledger keeps a message: its headers byte for byte, and a jsonb copy of its data."""

import json

from aiokafka.record.util import encode_varint_py
from hypothesis import given
from hypothesis import strategies as st

from services.reporting.adapters.ledger import decode_headers, encode_headers, queryable_copy


def kafka_varint(value):
    out = bytearray()
    encode_varint_py(value, out.append)
    return bytes(out)


def test_headers_are_encoded_as_kafka_encodes_them_in_a_record():
    headers = [("ce_id", b"abc"), ("x", None)]
    expected = (
        kafka_varint(2)
        + kafka_varint(5) + b"ce_id" + kafka_varint(3) + b"abc"
        + kafka_varint(1) + b"x" + kafka_varint(-1)
    )  # fmt: skip
    assert encode_headers(headers) == expected


@given(
    st.lists(
        st.tuples(st.text(max_size=30), st.one_of(st.none(), st.binary(max_size=300))),
        max_size=20,
    )
)
def test_any_headers_come_back_exactly_in_order_with_repeats(headers):
    assert decode_headers(encode_headers(headers)) == headers


def test_a_value_jsonb_takes_is_stored_as_it_came_numbers_beyond_a_double_included():
    value = b'{"title":"Disk full","n":1e400,"emoji":"\xf0\x9f\x98\x80"}'
    assert queryable_copy(value, json.loads(value)) == (value.decode(), False)


def test_escaped_surrogate_pairs_are_whole_characters_and_need_no_sanitizing():
    value = b'{"emoji":"\\ud83d\\ude00"}'
    text, sanitized = queryable_copy(value, json.loads(value))
    assert (json.loads(text), sanitized) == ({"emoji": "\U0001f600"}, False)


def test_nul_and_lone_surrogates_become_replacement_characters_in_the_marked_copy():
    value = b'{"t\\u0000":"a\\u0000b","s":"\\udc00","ok":"\\ud83d\\ude00","n":[1,"\\u0000"]}'
    text, sanitized = queryable_copy(value, json.loads(value))
    assert sanitized
    expected = {"t\ufffd": "a\ufffdb", "s": "\ufffd", "ok": "\U0001f600", "n": [1, "\ufffd"]}
    assert json.loads(text) == expected


def test_an_escaped_backslash_before_u0000_text_is_not_taken_for_a_nul():
    value = b'{"path":"C:\\\\u0000"}'
    text, sanitized = queryable_copy(value, json.loads(value))
    assert not sanitized
    assert json.loads(text) == {"path": "C:\\u0000"}
