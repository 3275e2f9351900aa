"""Events of the reporting service about its own ledger (ISO/IEC 20000-1 7.5.4, 9.4): the
signing keys and configuration of each tenant's verifiable log, and gaps found in what it
received. They travel through the reporting service's outbox to `itsm.reporting.events` and
back into the ledger like any other event, so a rebuild from Kafka replays them too.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class LedgerRunV1(BaseModel):
    """`count` consecutive entries of the log taken from one Kafka partition."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: str
    partition: int = Field(ge=0)
    count: int = Field(ge=1)


@event(
    "itsm.reporting.ledger.checkpoint_signed.v1", topic=REPORTING_EVENTS, source="itsm/reporting"
)
class LedgerCheckpointSignedV1(EventPayload):
    """A signed checkpoint of the tenant's log, and the order of the entries it added.

    `runs` say, in order, where the entries `previous_size` .. `tree_size - 1` came from: for
    each run, the next `count` records of this tenant on that topic partition (in offset
    order) that the ledger accepts (a valid catalogued CloudEvent whose id the log does not
    hold yet). A rebuild from Kafka follows the runs and so appends the same entries in the
    same order: the same leaves, the same roots. The checkpointer does not sign a log whose only
    new entries are checkpoint events, so an idle log stays quiet.
    """

    origin: str
    tree_size: int = Field(ge=0)
    root_hash: str = Field(description="Base64 of the tree's root hash (RFC 9162 MTH).")
    previous_size: int = Field(ge=0)
    key_id: str
    note: str = Field(description="The checkpoint as a C2SP signed note (text, signatures).")
    runs: list[LedgerRunV1]


@event("itsm.reporting.ledger.gap_detected.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class LedgerGapDetectedV1(EventPayload):
    """The ledger is missing events of an aggregate: versions skipped (`missing_versions`), or
    an event another record refers to never arrived."""

    aggregate: str = Field(description="The subject whose events are missing.")
    kind: Literal["version_gap", "missing_event"]
    missing_versions: list[int] = Field(default_factory=list)
    last_seen_version: int | None = None
    detail: str = Field(max_length=2000)


@event("itsm.reporting.evidence.exported.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class EvidenceExportedV1(EventPayload):
    """An evidence export was produced: the archive's hash and the checkpoint it stands on.

    The export is itself an entry of the tenant's log, so the log says which evidence was
    handed out, when, and what it held (the archive's SHA-256 identifies it byte for byte).
    """

    export_id: str
    period_from: datetime
    period_to: datetime
    clauses: list[str]
    archive_sha256: str = Field(description="Hex SHA-256 of the archive (.tar.gz).")
    tree_size: int = Field(ge=1, description="The size of the checkpoint the export holds.")
    root_hash: str = Field(description="Base64 of that checkpoint's root hash.")
    first_index: int = Field(ge=0, description="The first log index in entries.jsonl.")
    previous_tree_size: int | None = Field(
        default=None, description="The previous export's checkpoint size it is proven to extend."
    )


# --- Service reporting (ISO/IEC 20000-1 8.3.3, 9.1, 9.2, 9.3, 9.4) ---------------------------

ImprovementSource = Literal[
    "sla_target_missed", "availability_target_missed", "audit_finding", "manual"
]
ImprovementStatus = Literal["open", "in_progress", "done", "cancelled"]


class ImprovementActionV1(BaseModel):
    """An improvement action: what is to be done about a missed target or a finding, by whom,
    by when, and how it turned out."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    title: str = Field(min_length=1, max_length=200)
    source: ImprovementSource
    service: str | None = None
    policy: str | None = Field(default=None, description="The SLA policy whose target was missed.")
    target: str | None = Field(default=None, description="Which target, e.g. `P1 resolution`.")
    period: str | None = Field(default=None, description="The period missed, e.g. `2026-11`.")
    finding_id: str | None = None
    owner: str | None = None
    due_date: date | None = None
    status: ImprovementStatus = "open"
    outcome: str = Field(default="", max_length=20_000)


@event(
    "itsm.reporting.improvement_action.opened.v1", topic=REPORTING_EVENTS, source="itsm/reporting"
)
class ImprovementActionOpenedV1(EventPayload):
    """An improvement action was opened (subject `improvement/<id>`, version 1), by the service
    when a target was missed or by a person."""

    action: ImprovementActionV1


@event(
    "itsm.reporting.improvement_action.updated.v1", topic=REPORTING_EVENTS, source="itsm/reporting"
)
class ImprovementActionUpdatedV1(EventPayload):
    """An improvement action as it now stands (subject `improvement/<id>`, versions 2, 3, ...);
    `changes` maps each changed field to `{"from": ..., "to": ...}`."""

    action: ImprovementActionV1
    changes: dict[str, dict[str, Any]]


FindingStatus = Literal["open", "in_progress", "closed"]
FindingSeverity = Literal[
    "major_nonconformity", "minor_nonconformity", "observation", "opportunity"
]


class AuditFindingV1(BaseModel):
    """A finding of an internal audit (ISO/IEC 20000-1 9.2) and its corrective action."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    audit: str = Field(min_length=1, max_length=200, description="Which audit raised it.")
    clause: str = Field(min_length=1, max_length=20, description="e.g. `8.5.1`.")
    finding: str = Field(min_length=1, max_length=20_000)
    severity: FindingSeverity
    owner: str | None = None
    corrective_action: str = Field(default="", max_length=20_000)
    due_date: date | None = None
    status: FindingStatus = "open"


@event("itsm.reporting.audit_finding.recorded.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class AuditFindingRecordedV1(EventPayload):
    """An internal-audit finding was recorded (subject `audit-finding/<id>`, version 1)."""

    finding: AuditFindingV1


@event("itsm.reporting.audit_finding.updated.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class AuditFindingUpdatedV1(EventPayload):
    """A finding as it now stands (subject `audit-finding/<id>`, versions 2, 3, ...)."""

    finding: AuditFindingV1
    changes: dict[str, dict[str, Any]]


@event("itsm.reporting.report_definition.saved.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class ReportDefinitionSavedV1(EventPayload):
    """A service-report definition was created or changed (subject `report-definition/<id>`,
    versions 1, 2, ...): the definition in full, as the API shows it."""

    definition: dict[str, Any]
    deleted: bool = False


@event("itsm.reporting.report.generated.v1", topic=REPORTING_EVENTS, source="itsm/reporting")
class ReportGeneratedV1(EventPayload):
    """A report was generated and kept (subject `report/<report id>`, version 1): what it
    covers, the hash of each format, and the ledger checkpoint its figures were computed from.
    """

    report_id: str
    kind: Literal["service_report", "management_review"]
    definition_id: str | None = None
    definition_version: int | None = None
    period_from: datetime
    period_to: datetime
    trigger: Literal["schedule", "on_demand"]
    formats: dict[str, str] = Field(description="Format (json, csv, html, pdf) to hex SHA-256.")
    tree_size: int = Field(ge=0, description="The checkpoint's size the figures stand on.")
    root_hash: str = Field(description="Base64 of that checkpoint's root hash.")
