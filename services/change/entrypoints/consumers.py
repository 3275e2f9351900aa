"""The change service's consumers.

`change-cmdb-projection` is the shared CMDB consumer (`shared/cmdb/consumer.py`): CIs,
relationships, service membership and business services into the `cmdb_*` tables, which
validate a change's affected CIs, derive its business services and walk its blast radius.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.change.settings import SERVICE
from shared.cmdb.consumer import cmdb_consumer
from shared.inbox import EventConsumer

if TYPE_CHECKING:
    from shared.service import ServiceRuntime


def cmdb_projection_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Keeps the change service's CMDB graph projection (`shared/cmdb/`)."""
    return cmdb_consumer(
        SERVICE.name,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the change service."""
    return [cmdb_projection_consumer(runtime)]
