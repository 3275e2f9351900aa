"""Evidence exports, pure parts: clause records from events, the manifest, the archive, samples."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.reporting.application.evidence import pack, write_clauses_and_readme
from services.reporting.domain import clauses
from services.reporting.domain.clauses import LoggedEvent

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def event(index: int, type: str, subject: str, version: int = 1, **data: Any) -> LoggedEvent:
    return LoggedEvent(
        leaf_index=index,
        event_id=f"00000000-0000-0000-0000-{index:012d}",
        type=type,
        subject=subject,
        version=version,
        time=T0 + timedelta(minutes=index),
        actor="alice",
        data=data,
    )


def incident_life() -> list[LoggedEvent]:
    return [
        event(0, "itsm.incident.created.v1", "INC-1", title="Disk full", priority=2, state="new"),
        event(
            1,
            "itsm.incident.transitioned.v1",
            "INC-1",
            2,
            from_state="new",
            to_state="in_progress",
            priority=2,
        ),
        event(
            2,
            "itsm.incident.major_declared.v1",
            "INC-1",
            3,
            title="Disk full",
            priority=1,
            reason="priority",
            services=["svc-mail"],
            ci_id="ci-9",
        ),
        event(
            3,
            "itsm.incident.transitioned.v1",
            "INC-1",
            4,
            from_state="in_progress",
            to_state="resolved",
            priority=1,
        ),
        event(
            4,
            "itsm.config.ci.updated.v1",
            "ci-9",
            2,
            ci={
                "id": "ci-9",
                "ci_class": "server",
                "name": "mx1",
                "status": "active",
                "version": 2,
            },
            change_ref="CHG-7",
        ),
        event(
            5, "itsm.change.approval_recorded.v1", "CHG-7", 3, approver="bob", decision="approved"
        ),
        event(6, "itsm.change.release_deployed.v1", "REL-1", 2, environment="production"),
    ]


def test_incident_rows_give_the_time_each_state_was_entered_and_carry_the_title_forward():
    rows = clauses.records_of("8.6.1", incident_life())
    assert [(r["state"], r["time"]) for r in rows] == [
        ("new", T0.isoformat()),
        ("in_progress", (T0 + timedelta(minutes=1)).isoformat()),
        ("in_progress", (T0 + timedelta(minutes=2)).isoformat()),
        ("resolved", (T0 + timedelta(minutes=3)).isoformat()),
    ]
    assert {r["title"] for r in rows} == {"Disk full"}
    assert [r["leaf_index"] for r in rows] == [0, 1, 2, 3]


def test_a_ci_version_names_the_change_that_authorised_it_and_change_id_wins_when_present():
    [row] = clauses.records_of("8.2.6", incident_life())
    assert (row["record_id"], row["ci_version"], row["change_id"]) == ("ci-9", 2, "CHG-7")
    newer = event(
        9,
        "itsm.config.ci.updated.v1",
        "ci-9",
        3,
        ci={"id": "ci-9"},
        change_id="CHG-8",
        change_ref="old",
    )
    assert clauses.records_of("8.2.6", [newer])[0]["change_id"] == "CHG-8"


def test_change_events_of_any_new_type_flow_into_8_5_1_and_releases_into_8_5_3():
    changes = clauses.records_of("8.5.1", incident_life())
    assert [(r["event_type"], r["approver"], r["decision"]) for r in changes] == [
        ("itsm.change.approval_recorded.v1", "bob", "approved")
    ]
    [release] = clauses.records_of("8.5.3", incident_life())
    assert (release["record_id"], release["environment"]) == ("REL-1", "production")


def test_a_major_incident_is_an_outage_from_its_declaration_to_its_resolution():
    [outage] = clauses.records_of("8.7.1", incident_life())
    assert outage["record_id"] == "INC-1"
    assert outage["services"] == ["svc-mail"]
    assert outage["duration_seconds"] == 60.0
    assert outage["state"] == "resolved"
    assert outage["leaf_indexes"] == [2, 3]


def test_a_clause_without_events_is_its_header_alone_and_the_same_header_once_events_exist():
    for clause_id in clauses.CLAUSE_IDS:
        header = clauses.header_of(clause_id)
        empty = clauses.to_csv(header, clauses.records_of(clause_id, []))
        assert empty.decode().splitlines() == [",".join(header)]
        full = clauses.to_csv(header, clauses.records_of(clause_id, incident_life()))
        assert full.decode().splitlines()[0] == ",".join(header)
        document = json.loads(clauses.to_json(clause_id, header, []))
        assert document == {"clause": clause_id, "columns": list(header), "records": []}


def test_csv_cells_hold_nested_values_as_json_and_parse_back():
    header = clauses.header_of("8.6.1")
    text = clauses.to_csv(header, clauses.records_of("8.6.1", incident_life())).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert json.loads(rows[0]["details"])["title"] == "Disk full"
    assert rows[0]["major"] == ""


def test_every_column_of_every_clause_is_documented():
    text = clauses.describe_columns()
    for clause_id in clauses.CLAUSE_IDS:
        assert f"clauses/{clauses.stem_of(clause_id)}.csv" in text
        for column in clauses.header_of(clause_id):
            assert f"- `{column}`:" in text


def test_the_same_seed_draws_the_same_sample_and_another_seed_another():
    ids = [f"INC-{i}" for i in range(100)]
    first = clauses.sample_ids(ids, 25, "audit-2026")
    assert clauses.sample_ids(list(reversed(ids)) + ids[:10], 25, "audit-2026") == first
    assert len(set(first)) == 25
    assert clauses.sample_ids(ids, 25, "audit-2027") != first
    assert sorted(clauses.sample_ids(ids[:3], 25, "x")) == sorted(ids[:3])


def about() -> dict[str, Any]:
    return {
        "export_id": "e1",
        "tenant_id": "t1",
        "origin": "itsm.local/ledger/t1",
        "period": {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()},
        "clauses": list(clauses.CLAUSE_IDS),
        "tree_size": 7,
        "first_index": 0,
        "period_first_index": 0,
        "period_last_index": 6,
        "previous_tree_size": None,
    }


def test_the_manifest_hashes_every_file_and_the_archive_holds_the_layout(tmp_path: Path):
    (tmp_path / "checkpoint").write_text("note\n")
    (tmp_path / "entries.jsonl").write_bytes(b'{"index": 0, "entry": "AA=="}\n')
    write_clauses_and_readme(tmp_path, clauses.CLAUSE_IDS, incident_life(), about())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "manifest.json" not in manifest["files"]
    assert manifest["tenant_id"] == "t1"
    archive = pack(tmp_path, "evidence-e1")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    names = {name.removeprefix("evidence-e1/") for name in members}
    expected = {"checkpoint", "entries.jsonl", "manifest.json", "README.md", "verifier.py"} | {
        f"clauses/{clauses.stem_of(c)}.{ext}" for c in clauses.CLAUSE_IDS for ext in ("csv", "json")
    }
    assert names == expected
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(members[f"evidence-e1/{name}"]).hexdigest() == digest
    assert members["evidence-e1/verifier.py"] == Path("services/reporting/verifier.py").read_bytes()
    readme = members["evidence-e1/README.md"].decode()
    assert "python3 verifier.py" in readme and "8.6.1-incidents.csv" in readme
    # The same content packs to the same bytes (a resumed job gives the same archive).
    assert pack(tmp_path, "evidence-e1") == archive
