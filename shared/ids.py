"""Time-ordered identifiers (UUID version 7, RFC 9562) for rows and events.

A random (version 4) key lands on any page of its B-tree index, so a bulk write touches
pages all over every index keyed by it, and after each checkpoint PostgreSQL logs each such
page whole once more (a full-page image). A version 7 id starts with the Unix time in
milliseconds: ids made one after another sort next to each other, and a batch of inserts
fills the right-hand pages of the index. The other 74 bits are random (os.urandom), so ids
stay unguessable; they do tell when they were made, which a CI's or an event's record tells
anyway.

Python has `uuid.uuid7` only from 3.14; this follows the same layout.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF  # 12 bits after the version
_RAND_B = (1 << 62) - 1  # 62 bits after the variant


_UUID = uuid.UUID
_NEW = object.__new__
_SET = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def _compose(ms: int, random: int) -> uuid.UUID:
    # The value is valid by construction, so the UUID is built as `UUID.__setstate__` (what
    # unpickling uses) builds one: a third of the time of UUID(int=...), which checks it.
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION
        | ((random >> 62) & _RAND_A) << 64
        | _VARIANT
        | random & _RAND_B
    )
    made = _NEW(_UUID)
    _SET(made, "int", value)
    _SET(made, "is_safe", _UNKNOWN)
    return made


def new_id() -> uuid.UUID:
    """A fresh time-ordered id."""
    return _compose(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10)))


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` fresh time-ordered ids, in ascending order (one read of the random source)."""
    if n <= 0:
        return []
    ms = time.time_ns() // 1_000_000
    entropy = os.urandom(10 * n)
    ids = [_compose(ms, int.from_bytes(entropy[k : k + 10])) for k in range(0, 10 * n, 10)]
    ids.sort()
    return ids
