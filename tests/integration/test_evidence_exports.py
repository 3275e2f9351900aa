"""Evidence exports and samples on the real broker and database: the archive verifies offline
with its own verifier, its manifest holds, a second export proves it extends the first, a
tampered archive fails, an interrupted job is taken up again, and samples are reproducible."""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.reporting.commands import export as export_command
from services.reporting.verifier import VerifierKey, verify_inclusion
from shared.events.catalogue import CONFIG_EVENTS, INCIDENT_EVENTS
from shared.events.envelope import new_envelope
from tests.support import eventually, fetch_as, incident_event, send_event

EXPORTED = "itsm.reporting.evidence.exported.v1"
FAST = {"checkpoint_interval_seconds": 0.2}


def ci_event(tenant: str, ci_id: str, version: int, change_id: str | None) -> object:
    now = datetime.now(UTC)
    state = {
        "id": ci_id,
        "ci_class": "server",
        "name": "mx1",
        "status": "active",
        "owner_team": None,
        "criticality": 2,
        "attributes": {},
        "external_ids": {},
        "controlled": True,
        "version": version,
        "updated_at": now.isoformat(),
        "updated_by": "carol",
    }
    kind = "created" if version == 1 else "updated"
    data: dict[str, object] = {"ci": state}
    if version > 1:
        data |= {"changed": ["name"], "change_id": change_id}
    return new_envelope(
        source="itsm/config",
        type=f"itsm.config.ci.{kind}.v1",
        subject=ci_id,
        tenantid=tenant,
        itsmversion=version,
        actor="carol",
        data=data,
    )


async def send_kinds(producer, tenant: str) -> dict[str, str]:
    """Events of several kinds: an incident through its states and declared major, a request,
    a problem, a CI created then changed by a change."""
    incident = incident_event(tenant)
    await send_event(producer, incident, INCIDENT_EVENTS)
    subject = incident.subject

    def follow(type: str, version: int, **data: object) -> object:
        return new_envelope(
            source="itsm/incident",
            type=type,
            subject=subject,
            tenantid=tenant,
            itsmversion=version,
            actor="t",
            data=data,
        )

    await send_event(
        producer,
        follow(
            "itsm.incident.transitioned.v1", 2, from_state="new", to_state="in_progress", priority=3
        ),
        INCIDENT_EVENTS,
    )
    await send_event(
        producer,
        follow(
            "itsm.incident.major_declared.v1",
            3,
            title="Disk full",
            priority=1,
            reason="priority",
            services=["svc-mail"],
        ),
        INCIDENT_EVENTS,
    )
    await send_event(
        producer,
        follow(
            "itsm.incident.transitioned.v1",
            4,
            from_state="in_progress",
            to_state="resolved",
            priority=1,
        ),
        INCIDENT_EVENTS,
    )
    request = incident_event(
        tenant,
        type="itsm.incident.request.submitted.v1",
        title="New laptop",
        description="",
        requester="dave",
        priority=4,
        needs_approval=True,
    )
    await send_event(producer, request, INCIDENT_EVENTS)
    problem = incident_event(
        tenant, type="itsm.incident.problem.created.v1", title="Disks fill", description=""
    )
    await send_event(producer, problem, INCIDENT_EVENTS)
    ci_id = f"ci-{uuid.uuid4()}"
    await send_event(producer, ci_event(tenant, ci_id, 1, None), CONFIG_EVENTS)
    await send_event(producer, ci_event(tenant, ci_id, 2, "CHG-7"), CONFIG_EVENTS)
    return {
        "incident": subject,
        "request": request.subject,
        "problem": problem.subject,
        "ci": ci_id,
    }


async def entries_of(pools, tenant, type_prefix: str = "itsm."):
    return await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT type, leaf_index, data FROM ledger WHERE type LIKE $1 ORDER BY leaf_index",
        type_prefix + "%",
    )


async def covered(pools, tenant) -> tuple[int, int]:
    """(entries of the given kinds in the log, the largest signed checkpoint size)."""
    [row] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT (SELECT coalesce(max(leaf_index) + 1, 0) FROM ledger"
        "  WHERE type NOT LIKE 'itsm.reporting.%') AS size,"
        " (SELECT coalesce(max(tree_size), 0) FROM ledger_checkpoints) AS signed",
    )
    return row["size"], row["signed"]


async def export(reporting, auth, tenant, **body) -> tuple[dict, bytes]:
    headers = {**auth(tenant, "auditor"), "Idempotency-Key": str(uuid.uuid4())}
    started = await reporting.post("/evidence-exports", json=body, headers=headers)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    job = await eventually(
        lambda: _json(reporting.get(location, headers=auth(tenant, "auditor"))),
        lambda job: job["state"] in ("done", "failed"),
        timeout=60,
    )
    assert job["state"] == "done", job
    assert job["percent"] == 100.0 and job["entries_done"] == job["entries_total"]
    archive = await reporting.get(f"{location}/archive", headers=auth(tenant, "auditor"))
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    return job, archive.content


async def _json(response_awaitable):
    response = await response_awaitable
    assert response.status_code == 200, response.text
    return response.json()


def unpack(archive: bytes, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(into, filter="data")
    [root] = list(into.iterdir())
    return root


def run_verifier(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The archive's own verifier.py, run in the archive's directory with nothing of the
    project on its path: only the archive's files and the standard library + cryptography."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(
        [sys.executable, "-I", "verifier.py", ".", *args],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }


async def test_an_export_verifies_offline_holds_its_manifest_and_the_next_one_proves_it_extends_it(
    service_client, pools, producer, auth, tenant, tmp_path
):
    reporting = await service_client("reporting", **FAST)
    period = window()
    ids = await send_kinds(producer, tenant)
    await eventually(
        lambda: covered(pools, tenant), lambda c: c[0] >= 8 and c[1] >= c[0], timeout=30
    )

    job, archive = await export(reporting, auth, tenant, **period)
    bundle = unpack(archive, tmp_path / "first")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    assert set(manifest["files"]) >= {
        "checkpoint",
        "entries.jsonl",
        "proofs.jsonl",
        "keys",
        "verifier.py",
        "README.md",
        "clauses/8.6.1-incidents.csv",
        "clauses/8.7.1-availability.json",
    }
    assert "previous-checkpoint" not in manifest["files"]
    assert job["tree_size"] == manifest["tree_size"] and job["previous_tree_size"] is None
    checked = run_verifier(bundle, "--origin", f"itsm.local/ledger/{tenant}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"OK itsm.local/ledger/{tenant}: tree size {job['tree_size']}")

    # The records per clause, from the events.
    incidents = list(
        csv.DictReader(io.StringIO((bundle / "clauses/8.6.1-incidents.csv").read_text()))
    )
    assert [r["state"] for r in incidents if r["record_id"] == ids["incident"]] == [
        "new",
        "in_progress",
        "in_progress",
        "resolved",
    ]
    [outage] = json.loads((bundle / "clauses/8.7.1-availability.json").read_text())["records"]
    assert (outage["record_id"], outage["services"], outage["state"]) == (
        ids["incident"],
        ["svc-mail"],
        "resolved",
    )
    cis = json.loads((bundle / "clauses/8.2.6-configuration-items.json").read_text())["records"]
    assert [(r["record_id"], r["ci_version"], r["change_id"]) for r in cis] == [
        (ids["ci"], 1, None),
        (ids["ci"], 2, "CHG-7"),
    ]
    requests = (bundle / "clauses/8.6.2-service-requests.csv").read_text().splitlines()
    assert any(ids["request"] in line for line in requests[1:])
    changes = (bundle / "clauses/8.5.1-changes.csv").read_text().splitlines()
    assert len(changes) == 1  # no change events yet: the header alone
    # Each row points at its entry in the bundle.
    entries = {
        json.loads(line)["index"]: base64.b64decode(json.loads(line)["entry"])
        for line in (bundle / "entries.jsonl").read_text().splitlines()
    }
    for row in incidents:
        canonical = json.loads(entries[int(row["leaf_index"])])
        assert canonical["id"] == row["event_id"]

    # The export is itself an entry of the log, with the archive's hash.
    exported = await eventually(
        lambda: entries_of(pools, tenant, EXPORTED), lambda rows: len(rows) == 1, timeout=30
    )
    data = (
        json.loads(exported[0]["data"])
        if isinstance(exported[0]["data"], str)
        else exported[0]["data"]
    )
    assert data["archive_sha256"] == hashlib.sha256(archive).hexdigest() == job["archive_sha256"]
    assert data["tree_size"] == job["tree_size"]

    # A second export carries the consistency proof from the first one's checkpoint.
    await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    size_before = job["tree_size"]
    await eventually(
        lambda: covered(pools, tenant), lambda c: c[1] >= c[0] > size_before, timeout=30
    )
    second, archive2 = await export(reporting, auth, tenant, **period)
    assert second["previous_tree_size"] == job["tree_size"] < second["tree_size"]
    bundle2 = unpack(archive2, tmp_path / "second")
    assert (bundle2 / "previous-checkpoint").read_text() == (bundle / "checkpoint").read_text()
    consistency = json.loads((bundle2 / "consistency.json").read_text())
    assert (consistency["first"], consistency["second"]) == (job["tree_size"], second["tree_size"])
    checked = run_verifier(bundle2, "--earlier", str(bundle / "checkpoint"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"consistent with the earlier checkpoint(s) of size {job['tree_size']}" in checked.stdout

    # A tampered archive fails: one byte of one exported event changed.
    lines = (bundle2 / "entries.jsonl").read_text().splitlines()
    victim = json.loads(lines[3])
    raw = bytearray(base64.b64decode(victim["entry"]))
    raw[len(raw) // 2] ^= 0x01
    victim["entry"] = base64.b64encode(bytes(raw)).decode()
    lines[3] = json.dumps(victim)
    (bundle2 / "entries.jsonl").write_text("\n".join(lines) + "\n")
    failed = run_verifier(bundle2)
    assert failed.returncode == 1, failed.stdout
    assert f"first bad index: {victim['index']}" in failed.stdout


async def test_exports_need_the_permission_a_valid_period_and_a_log_to_stand_on(
    service_client, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    period = window()
    agent = {**auth(tenant, "agent"), "Idempotency-Key": str(uuid.uuid4())}
    assert (
        await reporting.post("/evidence-exports", json=period, headers=agent)
    ).status_code == 403
    auditor = {**auth(tenant, "auditor"), "Idempotency-Key": str(uuid.uuid4())}
    backwards = {"from": period["to"], "to": period["from"]}
    refused = await reporting.post("/evidence-exports", json=backwards, headers=auditor)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "to"
    auditor["Idempotency-Key"] = str(uuid.uuid4())
    unknown = await reporting.post(
        "/evidence-exports", json={**period, "clauses": ["9.9.9"]}, headers=auditor
    )
    assert unknown.status_code == 422
    # This tenant's log is empty: the export fails saying so instead of waiting for ever.
    auditor["Idempotency-Key"] = str(uuid.uuid4())
    started = await reporting.post("/evidence-exports", json=period, headers=auditor)
    assert started.status_code == 202, started.text
    job = await eventually(
        lambda: _json(reporting.get(started.headers["Location"], headers=auth(tenant, "auditor"))),
        lambda job: job["state"] in ("done", "failed"),
        timeout=30,
    )
    assert (job["state"], job["error"]) == (
        "failed",
        "the tenant's log is empty: there is no evidence to export",
    )
    unfinished = await reporting.get(
        started.headers["Location"] + "/archive", headers=auth(tenant, "auditor")
    )
    assert unfinished.status_code == 409
    missing = await reporting.get(
        f"/evidence-exports/{uuid.uuid4()}", headers=auth(tenant, "auditor")
    )
    assert missing.status_code == 404


async def test_a_job_whose_worker_died_is_taken_up_again_and_finishes(
    service_client, pools, producer, auth, tenant, tmp_path
):
    reporting = await service_client("reporting", **FAST)
    await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    await eventually(
        lambda: covered(pools, tenant), lambda c: c[0] >= 1 and c[1] >= c[0], timeout=30
    )
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    # As a replica leaves it when it dies mid-job: running, its lease lapsed.
    await fetch_as(
        pools["reporting"],
        tenant,
        "INSERT INTO evidence_exports (id, tenant_id, period_from, period_to, clauses,"
        " requested_by, state, attempts, lease_until, entries_done)"
        " VALUES ($1, $2, $3, $4, ARRAY['8.6.1'], 'auditor-1', 'running', 1,"
        " clock_timestamp() - interval '1 minute', 0) RETURNING id",
        job_id,
        tenant,
        now - timedelta(hours=1),
        now + timedelta(hours=1),
    )
    job = await eventually(
        lambda: _json(
            reporting.get(f"/evidence-exports/{job_id}", headers=auth(tenant, "auditor"))
        ),
        lambda job: job["state"] in ("done", "failed"),
        timeout=60,
    )
    assert job["state"] == "done", job
    archive = await reporting.get(
        f"/evidence-exports/{job_id}/archive", headers=auth(tenant, "auditor")
    )
    bundle = unpack(archive.content, tmp_path)
    assert sorted(p.name for p in (bundle / "clauses").iterdir()) == [
        "8.6.1-incidents.csv",
        "8.6.1-incidents.json",
    ]
    checked = run_verifier(bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_sample_is_reproducible_and_every_event_of_it_is_proven(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    for _ in range(6):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    await eventually(
        lambda: covered(pools, tenant), lambda c: c[0] >= 6 and c[1] >= c[0], timeout=30
    )
    headers = auth(tenant, "auditor")
    params = {"clause": "8.6.1", "n": 3, "seed": "audit-2026"}
    first = await _json(reporting.get("/evidence/sample", params=params, headers=headers))
    again = await _json(reporting.get("/evidence/sample", params=params, headers=headers))
    assert [r["record_id"] for r in first["records"]] == [r["record_id"] for r in again["records"]]
    assert first["population"] == 6 and len(first["records"]) == 3
    other = await _json(
        reporting.get(
            "/evidence/sample", params={**params, "seed": "other", "n": 6}, headers=headers
        )
    )
    assert {r["record_id"] for r in other["records"]} >= {r["record_id"] for r in first["records"]}
    keys = (await reporting.get("/ledger/keys", headers=headers)).json()
    key = VerifierKey.parse(keys[-1]["verifier_key"])
    root = key.verify(first["checkpoint"]).root
    for record in first["records"]:
        assert record["events"], record
        for event in record["events"]:
            verify_inclusion(
                base64.b64decode(event["leaf_hash"]),
                event["leaf_index"],
                first["tree_size"],
                [base64.b64decode(p) for p in event["proof"]],
                root,
            )
    [row] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT leaf_hash FROM ledger WHERE leaf_index = $1",
        first["records"][0]["events"][0]["leaf_index"],
    )
    assert base64.b64decode(first["records"][0]["events"][0]["leaf_hash"]) == row["leaf_hash"]
    bad = await reporting.get(
        "/evidence/sample", params={**params, "clause": "9.9"}, headers=headers
    )
    assert bad.status_code == 422


async def test_the_export_command_writes_a_verifying_archive_with_a_progress_bar(
    service_client, pools, producer, tenant, tmp_path, capsys
):
    reporting = await service_client("reporting", **FAST)
    for _ in range(3):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    await eventually(
        lambda: covered(pools, tenant), lambda c: c[0] >= 3 and c[1] >= c[0], timeout=30
    )
    now = datetime.now(UTC)
    out = tmp_path / "evidence.tar.gz"
    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--tenant", tenant,
            "--from", (now - timedelta(hours=1)).isoformat(),
            "--to", (now + timedelta(hours=1)).isoformat(),
            "--clauses", "8.6.1,8.7.1",
            "--out", str(out),
        ]
    )  # fmt: skip
    status = await export_command.run(args, reporting.runtime.settings)
    assert status == 0
    err = capsys.readouterr().err
    assert "wrote" in err and str(out) in err
    bundle = unpack(out.read_bytes(), tmp_path / "unpacked")
    assert sorted(p.name for p in (bundle / "clauses").iterdir()) == [
        "8.6.1-incidents.csv",
        "8.6.1-incidents.json",
        "8.7.1-availability.csv",
        "8.7.1-availability.json",
    ]
    incidents = (bundle / "clauses/8.6.1-incidents.csv").read_text().splitlines()
    assert len(incidents) == 1 + 3
    checked = run_verifier(bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with pytest.raises(SystemExit):
        parser.parse_args(["--tenant", tenant, "--from", "2026-01-01", "--to", "x", "--out", "f"])
