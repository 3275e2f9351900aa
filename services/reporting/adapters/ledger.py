"""The ledger table: record events as Kafka carried them, read a tenant's events in order.

The message (key, value, headers) is stored byte for byte: it is the record. `data` is a jsonb
copy for querying; when jsonb cannot hold the value (U+0000 or a lone surrogate in a string,
both valid JSON), it is a sanitized copy and `data_sanitized` says so. Readers get the data
decoded from the stored value, so the API shows what was sent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from shared.db import Connection
from shared.inbox import ReceivedEvent

_COLUMNS = (
    "position, event_id, type, source, subject, version, time, correlation_id, causation_id,"
    " actor, recorded_at, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"  # rows recorded before messages
)


_INSERTED = (
    "tenant_id, event_id, type, source, subject, version, time, correlation_id, causation_id,"
    " actor, data, data_sanitized, topic, partition, kafka_offset, message_key, message_value,"
    " message_headers"
)

# `data` arrives as JSON text, cast to jsonb here: the value itself when jsonb takes it, which
# spares encoding the parsed data again.
_SELECTED = _INSERTED.replace(" data,", " data::jsonb,")
_INSERT = (
    f"INSERT INTO ledger ({_INSERTED}) SELECT {_SELECTED}"  # noqa: S608 - constant columns
    " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
    " $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::boolean[], $13::text[], $14::int[], $15::bigint[], $16::bytea[], $17::bytea[],"
    f" $18::bytea[]) WITH ORDINALITY AS r({_INSERTED}, n)"
    " ORDER BY n"
)

# What jsonb may refuse in JSON that Python reads: the escapes `\u0000` and of surrogates
# (jsonb takes them only in pairs), exponents beyond numeric's range, a byte order mark. Once
# parsed, U+0000 and surrogates are characters (a surrogate left alone is unpaired).
_JSONB_MAY_REFUSE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|[eE][+-]?[0-9]{5,}|^\xef\xbb\xbf")
_REFUSED_BY_JSONB = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


async def append_many(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Record events in one statement, in order: the ledger consumer's one write (the inbox
    guarantees each event arrives here once)."""
    envelopes = [e.envelope for e in events]
    copies = [queryable_copy(e.record.value, e.envelope.data) for e in events]
    await conn.execute(
        _INSERT,
        [e.tenantid for e in envelopes],
        [e.id for e in envelopes],
        [e.type for e in envelopes],
        [e.source for e in envelopes],
        [e.subject for e in envelopes],
        [e.itsmversion for e in envelopes],
        [e.time for e in envelopes],
        [e.correlationid for e in envelopes],
        [e.causationid for e in envelopes],
        [e.actor for e in envelopes],
        [text for text, _ in copies],
        [sanitized for _, sanitized in copies],
        [event.record.topic for event in events],
        [event.record.partition for event in events],
        [event.record.offset for event in events],
        [event.record.key for event in events],
        [event.record.value for event in events],
        [encode_headers(event.record.headers) for event in events],
    )


def queryable_copy(value: bytes | None, data: dict[str, Any]) -> tuple[str, bool]:
    """The JSON text for the `data` column, and whether it had to be sanitized for jsonb."""
    if value is not None and not _JSONB_MAY_REFUSE.search(value):
        try:
            return value.decode(), False
        except UnicodeDecodeError:  # UTF-16, UTF-32, encoded surrogates: Python reads them
            pass
    copy, changed = _sanitized(data)
    return json.dumps(copy, separators=(",", ":")), changed


def _sanitized(value: Any) -> tuple[Any, bool]:
    """`value` with what jsonb refuses replaced, and whether anything was."""
    if isinstance(value, str):
        clean = _REFUSED_BY_JSONB.sub(REPLACEMENT, value)
        return clean, clean != value
    if isinstance(value, float) and not math.isfinite(value):
        return None, True  # 1e400 and the like: a float only in Python, numeric in the value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            clean_key, key_changed = _sanitized(key)
            out[clean_key], item_changed = _sanitized(item)
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, list):
        items = [_sanitized(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False


# --- Kafka record headers, encoded as in Kafka's record format v2 -----------------------------


def encode_headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """A record's headers as Kafka encodes them in a record batch (order and repeats kept)."""
    out = bytearray()
    _write_varint(out, len(headers))
    for key, value in headers:
        raw_key = key.encode()
        _write_varint(out, len(raw_key))
        out += raw_key
        if value is None:
            _write_varint(out, -1)
        else:
            _write_varint(out, len(value))
            out += value
    return bytes(out)


def decode_headers(raw: bytes) -> list[tuple[str, bytes | None]]:
    """The headers `encode_headers` encoded."""
    count, pos = _read_varint(raw, 0)
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        size, pos = _read_varint(raw, pos)
        key = raw[pos : pos + size].decode()
        pos += size
        size, pos = _read_varint(raw, pos)
        if size < 0:
            headers.append((key, None))
            continue
        headers.append((key, raw[pos : pos + size]))
        pos += size
    if pos != len(raw):
        raise ValueError(f"{len(raw) - pos} bytes after the last header")
    return headers


def _write_varint(out: bytearray, value: int) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    zigzag = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        zigzag |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (zigzag >> 1) ^ -(zigzag & 1), pos
        shift += 7


async def page(
    conn: Connection,
    tenant_id: str,
    *,
    subject: str | None,
    event_type: str | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` of the tenant's entries after a position, oldest first; `data` as sent."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ledger"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1 AND position > $2"
        " AND ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR type = $4)"
        " ORDER BY position LIMIT $5",
        tenant_id,
        after,
        subject,
        event_type,
        limit,
    )
    entries = []
    for row in rows:
        entry = dict(row)
        value = entry.pop("message_value")
        if value is not None:
            entry["data"] = json.loads(value)
        entries.append(entry)
    return entries
