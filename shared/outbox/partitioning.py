"""Where Kafka's default partitioner puts a key: the relay builds its record batches per
partition itself and must choose exactly as the producer would."""

from __future__ import annotations

import struct
from collections.abc import Sequence

_MURMUR_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a message key (the Java client's, and aiokafka's), a word at a
    time instead of a byte at a time."""
    m, mask = _MURMUR_M, _MASK32
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & mask
        h = ((h * m) & mask) ^ (((k ^ (k >> 24)) * m) & mask)
    tail = length & 3
    if tail:
        base = words << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives a key, among a topic's partitions."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
