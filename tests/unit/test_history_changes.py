"""Instants inside a record's history `changes` are RFC 3339, like every other instant."""

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

from services.incident.domain import incident
from services.incident.domain.changes import change_value

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_resolving_an_incident_records_resolved_at_in_rfc_3339():
    now = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    opened, _ = incident.log_incident(
        tenant_id="acme", title="t", description="", impact=2, urgency=2, actor="a", now=now
    )
    started = incident.transition(opened, "in_progress", actor="a", now=now).incident
    resolved = incident.transition(
        started,
        "resolved",
        actor="a",
        now=now,
        resolution_code="solved_permanently",
        resolution_notes="Restarted the pool.",
    )
    written = resolved.changes["resolved_at"]["to"]
    assert written == "2026-05-01T10:00:00.123456Z"
    assert RFC3339.match(written)


def test_change_values_are_json_with_instants_in_rfc_3339():
    ident = uuid.uuid4()
    east = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert change_value(east) == "2026-05-01T12:00:00+02:00"
    assert change_value((ident, east)) == [str(ident), "2026-05-01T12:00:00+02:00"]
    assert change_value(3) == 3 and change_value(None) is None
