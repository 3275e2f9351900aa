"""Transactional outbox: write events with the state change, relay them to Kafka afterwards.

- `writer`: `append`, `append_many`, `encode_many`/`insert_encoded` and `encode_data`, the one
  encoder of the wire format, used inside the caller's transaction;
- `relay`: `OutboxRelay`, which publishes committed rows, in order per aggregate;
- `partitioning`: Kafka's default partitioner (`murmur2`, `partition_for`), which the relay
  reproduces to build its record batches per partition.

Every public name is re-exported here: `from shared import outbox; outbox.append_many(...)`.
"""

from shared.outbox.partitioning import murmur2, partition_for
from shared.outbox.relay import OutboxRelay
from shared.outbox.writer import (
    Encoded,
    Pending,
    append,
    append_many,
    encode_data,
    encode_many,
    insert_encoded,
)

__all__ = [
    "Encoded",
    "OutboxRelay",
    "Pending",
    "append",
    "append_many",
    "encode_data",
    "encode_many",
    "insert_encoded",
    "murmur2",
    "partition_for",
]
