"""Signed checkpoints, the log's API and its proofs, on the real broker and database."""

from __future__ import annotations

import base64
import uuid

from services.reporting.adapters.checkpoints import candidates
from services.reporting.application.checkpoints import Checkpointer, LedgerConfiguration
from services.reporting.domain.checkpoints import load_signer
from services.reporting.verifier import (
    VerifierKey,
    canonical_of_record,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from shared.auth.tokens import new_signing_key, save_private_key
from shared.db import all_tenants_transaction
from shared.events.catalogue import INCIDENT_EVENTS
from tests.support import eventually, fetch_as, incident_event, send_event

CHECKPOINT = "itsm.reporting.ledger.checkpoint_signed.v1"
KEY_ADDED = "itsm.reporting.ledger.key_added.v1"
CONFIGURED = "itsm.reporting.ledger.configuration_changed.v1"
FAST = {"checkpoint_interval_seconds": 0.2}


def b64(text: str) -> bytes:
    return base64.b64decode(text)


async def entry_types(pools, tenant):
    rows = await fetch_as(pools["reporting"], tenant, "SELECT type FROM ledger ORDER BY leaf_index")
    return [r["type"] for r in rows]


async def checkpoint_sizes(pools, tenant):
    rows = await fetch_as(
        pools["reporting"], tenant, "SELECT tree_size FROM ledger_checkpoints ORDER BY 1"
    )
    return [r["tree_size"] for r in rows]


async def quiet_state(pools, tenant):
    return await entry_types(pools, tenant), await checkpoint_sizes(pools, tenant)


def is_quiet(state) -> bool:
    types, sizes = state
    return bool(sizes) and types.count(CHECKPOINT) == len(sizes) and sizes[-1] == len(types) - 1


async def candidate_tenants(pools, key_id, configuration):
    async with all_tenants_transaction(pools["reporting"]) as conn:
        return [c.tenant_id for c in await candidates(conn, key_id, configuration)]


async def send_incidents(producer, tenant, n):
    for _ in range(n):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)


async def test_a_growing_log_is_signed_after_its_key_and_configuration_and_then_stays_quiet(
    service_client, pools, producer, auth, tenant, migrated
):
    reporting = await service_client("reporting", **FAST)
    await send_incidents(producer, tenant, 3)

    # The key and the configuration are entries first; the key signs once its entry is in.
    # Quiet: every checkpoint's event is in, and the newest covers everything else.
    types, sizes = await eventually(lambda: quiet_state(pools, tenant), is_quiet)
    assert set(types[:3]) == {"itsm.incident.created.v1"}
    assert KEY_ADDED in types[: sizes[0]]
    assert CONFIGURED in types
    first_checkpoint = sizes[-1]
    assert types.index(CONFIGURED) < first_checkpoint

    headers = auth(tenant, "auditor")
    keys = (await reporting.get("/ledger/keys", headers=headers)).json()
    signer = load_signer(str(migrated.ledger_key_file), "itsm.local/ledger")
    assert signer.verifier_key in [k["verifier_key"] for k in keys]
    latest = (await reporting.get("/ledger/checkpoint", headers=headers)).json()
    assert latest["tree_size"] == first_checkpoint
    assert latest["origin"] == f"itsm.local/ledger/{tenant}"
    note = await reporting.get("/ledger/checkpoint", headers={**headers, "Accept": "text/plain"})
    assert note.text == latest["note"]
    checkpoint = VerifierKey.parse(signer.verifier_key).verify(note.text)
    assert checkpoint.size == first_checkpoint
    rows = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT leaf_hash FROM ledger WHERE leaf_index < $1 ORDER BY leaf_index",
        first_checkpoint,
    )
    assert checkpoint.root == root_of([r["leaf_hash"] for r in rows]) == b64(latest["root_hash"])

    # The checkpoint's own event is in the log; alone, it calls for no other checkpoint.
    quiet = Checkpointer(
        pools["reporting"],
        signer,
        LedgerConfiguration("itsm.local/ledger", "itsm.local/ledger", 0.2),
        reporting.runtime.service_metrics,
        reporting.runtime.metrics.tenant,
    )
    assert [c for c in await quiet.round("interval") if c.tenant_id == tenant] == []
    assert await checkpoint_sizes(pools, tenant) == sizes
    # Nor is it visited: a round opens no transaction for a log that holds nothing new, so an
    # idle tenant costs nothing; a configuration it has not been told of is news to it.
    configured = quiet.configuration.as_json()
    assert tenant not in await candidate_tenants(pools, signer.key_id, configured)
    changed = {**configured, "checkpoint_interval_seconds": 60}
    assert tenant in await candidate_tenants(pools, signer.key_id, changed)
    assert tenant in await candidate_tenants(pools, "another-key", configured)

    # More events: more checkpoints, whose events say where their entries came from.
    await send_incidents(producer, tenant, 2)
    _, sizes = await eventually(
        lambda: quiet_state(pools, tenant),
        lambda state: is_quiet(state) and state[0].count("itsm.incident.created.v1") == 5,
    )
    assert sizes[-1] >= first_checkpoint + 3
    data = await eventually(
        lambda: fetch_as(
            pools["reporting"],
            tenant,
            "SELECT data FROM ledger WHERE type = $1 ORDER BY leaf_index",
            CHECKPOINT,
        ),
        lambda rows: len(rows) == len(sizes),
    )
    announced = [row["data"] for row in data]
    assert [(a["previous_size"], a["tree_size"]) for a in announced] == list(
        zip([0, *sizes[:-1]], sizes, strict=True)
    )
    for event in announced:
        assert (
            sum(run["count"] for run in event["runs"])
            == event["tree_size"] - event["previous_size"]
        )
        assert all(run["topic"] for run in event["runs"])


async def test_a_checkpoint_on_demand_is_signed_at_once_and_asking_again_returns_it(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", checkpoint_interval_seconds=0.2)
    await send_incidents(producer, tenant, 2)
    await eventually(lambda: entry_types(pools, tenant), lambda types: CHECKPOINT in types)
    await send_incidents(producer, tenant, 1)
    await eventually(
        lambda: fetch_as(pools["reporting"], tenant, "SELECT 1 FROM ledger"),
        lambda rows: len(rows) >= 7,
    )
    headers = {**auth(tenant, "auditor"), "Idempotency-Key": str(uuid.uuid4())}
    signed = await reporting.post("/ledger/checkpoints", headers=headers)
    assert signed.status_code in (200, 201), signed.text
    size = signed.json()["tree_size"]
    assert size >= 7
    # Retried with its key, the request is answered as the first time, not signed again.
    replayed = await reporting.post("/ledger/checkpoints", headers=headers)
    assert (replayed.status_code, replayed.content) == (signed.status_code, signed.content)
    assert replayed.headers["idempotent-replayed"] == "true"
    again = await reporting.post(
        "/ledger/checkpoints", headers={**headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert again.status_code in (200, 201)
    assert again.json()["tree_size"] >= size
    agent = {**auth(tenant, "agent"), "Idempotency-Key": str(uuid.uuid4())}
    assert (await reporting.post("/ledger/checkpoints", headers=agent)).status_code == 403


async def test_inclusion_and_consistency_proofs_verify_against_signed_checkpoints(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    headers = auth(tenant, "auditor")
    await send_incidents(producer, tenant, 5)
    await eventually(lambda: checkpoint_sizes(pools, tenant), lambda sizes: len(sizes) >= 1)
    await send_incidents(producer, tenant, 4)
    sizes = await eventually(lambda: checkpoint_sizes(pools, tenant), lambda sizes: len(sizes) >= 2)
    notes = {
        r["tree_size"]: r["note"]
        for r in await fetch_as(
            pools["reporting"], tenant, "SELECT tree_size, note FROM ledger_checkpoints"
        )
    }
    key = VerifierKey.parse(
        (await reporting.get("/ledger/keys", headers=headers)).json()[-1]["verifier_key"]
    )
    roots = {size: key.verify(note).root for size, note in notes.items()}
    first, second = sizes[0], sizes[1]

    entries = (
        await reporting.get("/ledger/entries", params={"start": 0, "end": second}, headers=headers)
    ).json()
    assert [e["index"] for e in entries["entries"]] == list(range(second))
    for item in entries["entries"]:
        leaf = leaf_hash(b64(item["entry"]))
        answer = await reporting.get(
            "/ledger/proofs/inclusion",
            params={"index": item["index"], "tree_size": second},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        proof = answer.json()
        assert b64(proof["leaf_hash"]) == leaf
        verify_inclusion(
            leaf, item["index"], second, [b64(p) for p in proof["proof"]], roots[second]
        )
        assert proof["checkpoint"] == notes[second]
    by_event = await reporting.get(
        "/ledger/proofs/inclusion",
        params={"event_id": entries["entries"][0]["event_id"]},
        headers=headers,
    )
    assert by_event.json()["index"] == 0

    consistency = (
        await reporting.get(
            "/ledger/proofs/consistency",
            params={"first": first, "second": second},
            headers=headers,
        )
    ).json()
    verify_consistency(
        first, second, [b64(p) for p in consistency["proof"]], roots[first], roots[second]
    )
    # The entries' bytes are the canonical bytes of the stored messages.
    [row] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT message_headers, message_value FROM ledger WHERE leaf_index = 0",
    )
    from services.reporting.adapters.ledger import decode_headers

    assert b64(entries["entries"][0]["entry"]) == canonical_of_record(
        decode_headers(row["message_headers"]), row["message_value"]
    )


async def test_bad_proof_requests_are_refused_with_422_naming_the_field(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    headers = auth(tenant, "auditor")
    empty = await reporting.get("/ledger/checkpoint", headers=headers)
    assert empty.status_code == 404
    await send_incidents(producer, tenant, 2)
    sizes = await eventually(lambda: checkpoint_sizes(pools, tenant), lambda sizes: sizes)
    size = sizes[0]

    async def field_of(path, params):
        response = await reporting.get(path, params=params, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return [e["field"] for e in response.json()["errors"]]

    inclusion = "/ledger/proofs/inclusion"
    assert await field_of(inclusion, {"index": size, "tree_size": size}) == ["index"]
    assert await field_of(inclusion, {"index": 0, "tree_size": 10**6}) == ["tree_size"]
    assert await field_of(inclusion, {}) == ["index"]
    assert await field_of(inclusion, {"index": 0, "event_id": str(uuid.uuid4())}) == ["event_id"]
    assert await field_of(inclusion, {"index": -1}) == ["index"]
    consistency = "/ledger/proofs/consistency"
    assert await field_of(consistency, {"first": size + 1, "second": size}) == ["first"]
    assert await field_of(consistency, {"first": 0, "second": 10**6}) == ["second"]
    assert await field_of("/ledger/entries", {"start": 10**6}) == ["start"]
    unknown = await reporting.get(
        inclusion, params={"event_id": str(uuid.uuid4())}, headers=headers
    )
    assert unknown.status_code == 404


async def test_a_restart_with_a_new_key_keeps_the_tree_records_the_rotation_and_stays_consistent(
    start_runtime, service_client, pools, producer, auth, tenant, tmp_path
):
    first = await start_runtime("reporting", **FAST)
    await send_incidents(producer, tenant, 3)
    _, signed = await eventually(
        lambda: quiet_state(pools, tenant),
        lambda state: is_quiet(state) and state[0].count("itsm.incident.created.v1") == 3,
    )
    old_size = signed[-1]
    await first.stop()

    new_key = tmp_path / "ledger-key.pem"
    save_private_key(new_signing_key(), new_key)
    reporting = await service_client("reporting", ledger_signing_key_file=str(new_key), **FAST)
    await send_incidents(producer, tenant, 2)
    sizes = await eventually(lambda: checkpoint_sizes(pools, tenant), lambda sizes: len(sizes) >= 2)
    headers = auth(tenant, "auditor")
    keys = (await reporting.get("/ledger/keys", headers=headers)).json()
    new = load_signer(str(new_key), "itsm.local/ledger")
    listed = {k["verifier_key"]: k for k in keys}
    assert listed[new.verifier_key]["retired_at"] is None
    assert any(k["retired_at"] is not None for k in keys)
    rotations = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT data FROM ledger WHERE type = $1 ORDER BY leaf_index",
        KEY_ADDED,
    )
    assert [r["data"]["previous_key_id"] for r in rotations][-1] is not None
    assert rotations[-1]["data"]["key_id"] == new.key_id
    rows = await fetch_as(pools["reporting"], tenant, "SELECT leaf_index FROM ledger ORDER BY 1")
    assert [r["leaf_index"] for r in rows] == list(range(len(rows)))
    notes = {
        r["tree_size"]: r["note"]
        for r in await fetch_as(
            pools["reporting"], tenant, "SELECT tree_size, note FROM ledger_checkpoints"
        )
    }
    old_root = (
        VerifierKey.parse(next(k for k in listed if k != new.verifier_key))
        .verify(notes[old_size])
        .root
    )
    new_size = sizes[-1]
    new_root = VerifierKey.parse(new.verifier_key).verify(notes[new_size]).root
    proof = (
        await reporting.get(
            "/ledger/proofs/consistency",
            params={"first": old_size, "second": new_size},
            headers=headers,
        )
    ).json()
    verify_consistency(old_size, new_size, [b64(p) for p in proof["proof"]], old_root, new_root)
