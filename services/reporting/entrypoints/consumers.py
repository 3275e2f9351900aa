"""The reporting service's consumers: every event of every service into the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.reporting.adapters import ledger
from shared.events.catalogue import (
    AUTH_REVOCATIONS,
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    INCIDENT_EVENTS,
    REPORTING_EVENTS,
)
from shared.inbox import EventConsumer

if TYPE_CHECKING:
    from shared.service import ServiceRuntime

LEDGER_CONSUMER = "reporting-ledger"
# Every topic the ledger records (a rebuild from Kafka reads the same ones).
LEDGER_TOPICS = (INCIDENT_EVENTS, CHANGE_EVENTS, CONFIG_EVENTS, REPORTING_EVENTS, AUTH_REVOCATIONS)


def ledger_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """Records every catalogued event of every topic in the ledger, once."""
    return EventConsumer(
        name=LEDGER_CONSUMER,
        topics=list(LEDGER_TOPICS),
        handler=ledger.append_many,
        pool=runtime.pool,
        producer=runtime.producer,
        metrics=runtime.metrics,
        max_records=runtime.settings.consumer_max_records,
    )


def consumers(runtime: ServiceRuntime) -> Sequence[EventConsumer]:
    """All consumers of the reporting service."""
    return [ledger_consumer(runtime)]
