"""Events of the reporting service about its own ledger (ISO/IEC 20000-1 7.5.4, 9.4): the
signing keys and configuration of each tenant's verifiable log, and gaps found in what it
received. They travel through the reporting service's outbox to `itsm.reporting.events` and
back into the ledger like any other event, so a rebuild from Kafka replays them too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.base import EventPayload, event
from shared.events.topics import REPORTING_EVENTS

# The aggregate (CloudEvents subject) of a tenant's ledger: its keys and configuration.
LEDGER_SUBJECT = "ledger"


@event("itsm.reporting.ledger.key_added.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class LedgerKeyAddedV1(EventPayload):
    """A signing key signs this tenant's checkpoints from now on (first key or a rotation).

    Recorded in the tenant's log before the first checkpoint that key signs, so the log itself
    says which key an auditor must trust for which part of it.
    """

    key_id: str = Field(description="Hex of the 4-byte key hash of the C2SP signed-note format.")
    verifier_key: str = Field(description="The note verifier key: name+hash+base64(0x01 || key).")
    algorithm: Literal["ed25519"] = "ed25519"
    previous_key_id: str | None = Field(
        default=None, description="The key it replaces; None for the log's first key."
    )
    activated_at: datetime


@event(
    "itsm.reporting.ledger.configuration_changed.v1",
    topic=REPORTING_EVENTS,
    source="itsm/reporting",
)
class LedgerConfigurationChangedV1(EventPayload):
    """The ledger's configuration changed (origin, checkpoint interval, ...), as `{setting:
    {"from": old, "to": new}}`; `from` is null for the first configuration a log records."""

    changes: dict[str, dict[str, Any]]


@event("itsm.reporting.ledger.gap_detected.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class LedgerGapDetectedV1(EventPayload):
    """The ledger is missing events of an aggregate: versions skipped (`missing_versions`), or
    an event another record refers to never arrived."""

    aggregate: str = Field(description="The subject whose events are missing.")
    kind: Literal["version_gap", "missing_event"]
    missing_versions: list[int] = Field(default_factory=list)
    last_seen_version: int | None = None
    detail: str = Field(max_length=2000)
