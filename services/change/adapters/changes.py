"""Change records in PostgreSQL: the shared record repository over the `changes` table."""

from __future__ import annotations

from services.change.domain.change import Change
from shared.records.sql import RecordTable

CHANGES = RecordTable(
    Change,
    table="changes",
    history="change_history",
    key="change_id",
    kind="change",
    what="the change",
    arrays=(
        "affected_cis",
        "business_services",
        "test_evidence",
        "incidents",
        "problems",
    ),
)
