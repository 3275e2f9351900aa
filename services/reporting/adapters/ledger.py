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
from datetime import UTC
from typing import Any

import asyncpg

from services.reporting.adapters import log
from services.reporting.verifier import canonical_of_record
from shared.db import Connection
from shared.events.binding import CONTENT_TYPE, encode_json
from shared.inbox import ReceivedEvent

_COLUMNS = (
    "position, event_id, type, source, subject, version, time, correlation_id, causation_id,"
    " actor, recorded_at, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"  # rows recorded before messages
)


_INSERTED = (
    "tenant_id, event_id, type, source, subject, version, time, correlation_id, causation_id,"
    " actor, data, data_sanitized, topic, partition, kafka_offset, message_key, message_value,"
    " message_headers, leaf_index, leaf_hash"
)

# `data` arrives as JSON text, cast to jsonb here: the value itself when jsonb takes it, which
# spares encoding the parsed data again.
_SELECTED = _INSERTED.replace(" data,", " data::jsonb,")
_INSERT = (
    f"INSERT INTO ledger ({_INSERTED}) SELECT {_SELECTED}"  # noqa: S608 - constant columns
    " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
    " $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::boolean[], $13::text[], $14::int[], $15::bigint[], $16::bytea[], $17::bytea[],"
    " $18::bytea[], $19::bigint[], $20::bytea[])"
    f" WITH ORDINALITY AS r({_INSERTED}, n)"
    " ORDER BY n"
)

# What jsonb may refuse in JSON that Python reads: the escapes `\u0000` and of surrogates
# (jsonb takes them only in pairs), exponents beyond numeric's range, a byte order mark. Once
# parsed, U+0000 and surrogates are characters (a surrogate left alone is unpaired).
_JSONB_MAY_REFUSE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|[eE][+-]?[0-9]{5,}|^\xef\xbb\xbf")
_REFUSED_BY_JSONB = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


async def append_many(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Record one tenant's events in order and append them to its verifiable log: the ledger
    consumer's one write (the inbox guarantees each event arrives here once, tenant by tenant).

    The tenant's head is locked first, so appends of two consumer replicas take turns and the
    indexes stay dense; rows, nodes and head are written in two statements whatever the batch.
    """
    if not events:
        return
    envelopes = [e.envelope for e in events]
    tenant_id = envelopes[0].tenantid
    if any(e.tenantid != tenant_id for e in envelopes):
        raise ValueError("append_many takes one tenant's events (the inbox groups them)")
    # Hash before taking the lock: the lock is held only for the database's work.
    entries = [canonical_of_record(e.record.headers, e.record.value) for e in events]
    copies = [queryable_copy(e.record.value, e.envelope.data) for e in events]
    head = await log.adopt(conn, await log.lock_head(conn, tenant_id), canonical_of_row)
    appended = log.extend(head, entries)
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
        list(range(appended.first_index, appended.size)),
        appended.leaves,
    )
    await log.save_tree(conn, tenant_id, appended)


def canonical_of_row(row: asyncpg.Record) -> bytes:
    """The canonical bytes of a stored row: from its message, or, for a row recorded before
    messages were kept (no `message_value`), from the message the binding would have written
    for it: its attributes as `ce_*` headers (time in ISO 8601 as stored, in UTC) and its data
    as compact, key-sorted JSON (shared.events.binding.encode_json)."""
    value = row["message_value"]
    if value is not None:
        return canonical_of_record(decode_headers(row["message_headers"]), value)
    headers = [
        ("content-type", CONTENT_TYPE),
        ("ce_specversion", "1.0"),
        ("ce_id", str(row["event_id"])),
        ("ce_source", row["source"]),
        ("ce_type", row["type"]),
        ("ce_subject", row["subject"]),
        ("ce_time", row["time"].astimezone(UTC).isoformat()),
        ("ce_tenantid", row["tenant_id"]),
        ("ce_itsmversion", str(row["version"])),
        ("ce_correlationid", row["correlation_id"]),
        ("ce_causationid", row["causation_id"]),
        ("ce_actor", row["actor"]),
    ]
    return canonical_of_record(
        [(name, text.encode()) for name, text in headers if text is not None],
        encode_json(row["data"]),
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
        # A length below 64 is one byte (zigzag doubles it), the usual case; -1 is 0x01.
        if len(raw_key) < 64:
            out.append(len(raw_key) << 1)
        else:
            _write_varint(out, len(raw_key))
        out += raw_key
        if value is None:
            out.append(1)
        elif len(value) < 64:
            out.append(len(value) << 1)
            out += value
        else:
            _write_varint(out, len(value))
            out += value
    return bytes(out)


def decode_headers(raw: bytes) -> list[tuple[str, bytes | None]]:
    """The headers `encode_headers` encoded."""
    count, pos = _read_varint(raw, 0)
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        size = raw[pos]
        if size & 0x81:  # more than one byte, or odd (negative): the general case
            size, pos = _read_varint(raw, pos)
        else:  # one byte: zigzag of a length below 64
            size >>= 1
            pos += 1
        key = raw[pos : pos + size].decode()
        pos += size
        size = raw[pos]
        if size & 0x81:
            size, pos = _read_varint(raw, pos)
            if size < 0:
                headers.append((key, None))
                continue
        else:
            size >>= 1
            pos += 1
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
