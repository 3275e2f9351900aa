"""Tampering as a database superuser would, and `verify` catching it, naming the first bad index.

The superuser bypasses row-level security and switches the append-only triggers off
(`session_replication_role = replica`); nothing in the database can stop them. What the log adds
is that the change shows: the stored messages no longer hash to the leaves, or the leaves no
longer give the roots the ledger's key signed.
"""

from __future__ import annotations

import argparse
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.reporting.adapters import ledger as ledger_rows
from services.reporting.application.selfcheck import SelfCheck
from services.reporting.commands import verify as verify_command
from services.reporting.commands.verify import LogVerificationError, verify_tenant
from services.reporting.domain import merkle
from services.reporting.domain.checkpoints import Signer, load_signer
from services.reporting.verifier import Checkpoint, VerifierKey, leaf_hash
from shared.events.catalogue import INCIDENT_EVENTS
from shared.provision import DEFAULT_DATABASE, dsn_for_admin_database
from shared.registry import service
from tests.support import eventually, fetch_as, incident_event, sample_value, send_event

CHECKPOINT = "itsm.reporting.ledger.checkpoint_signed.v1"


@pytest.fixture
async def superuser(infra):
    """A database superuser's session on the reporting schema, triggers off."""
    conn = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    await conn.execute(f"SET search_path = {service('reporting').schema}")
    await conn.execute("SET session_replication_role = replica")
    yield conn
    await conn.close()


@pytest.fixture
def trusted(migrated):
    return [
        VerifierKey.parse(
            load_signer(str(migrated.ledger_key_file), "itsm.local/ledger").verifier_key
        )
    ]


@pytest.fixture
async def reporting(service_client):
    return await service_client("reporting", checkpoint_interval_seconds=0.2)


async def sizes(pools, tenant):
    rows = await fetch_as(
        pools["reporting"], tenant, "SELECT tree_size, note FROM ledger_checkpoints ORDER BY 1"
    )
    return [(r["tree_size"], r["note"]) for r in rows]


async def log_state(pools, tenant):
    """(entries, incidents, checkpoint events, checkpoints stored as (size, note))."""
    rows = await fetch_as(pools["reporting"], tenant, "SELECT type FROM ledger")
    incidents = sum(r["type"].startswith("itsm.incident.") for r in rows)
    events = sum(r["type"] == CHECKPOINT for r in rows)
    return len(rows), incidents, events, await sizes(pools, tenant)


def quiet_with(incidents):
    """Every incident in, every checkpoint's event in, and the newest covering all else."""

    def check(state):
        entries, seen, events, checkpoints = state
        return (
            seen == incidents
            and bool(checkpoints)
            and events == len(checkpoints)
            and checkpoints[-1][0] == entries - 1
        )

    return check


async def signed_log(pools, producer, tenant) -> tuple[int, str]:
    """A tenant's log of at least two signed checkpoints, quiet; (its size, the first
    checkpoint's note, kept as an auditor would)."""
    for _ in range(5):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    first = await eventually(lambda: sizes(pools, tenant), lambda found: len(found) >= 1)
    for _ in range(4):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    size, *_ = await eventually(lambda: log_state(pools, tenant), quiet_with(9))
    return size, first[0][1]


async def verify_fails_at(pools, tenant, trusted, earlier=None) -> LogVerificationError:
    with pytest.raises(LogVerificationError) as caught:
        await verify_tenant(pools["reporting"], tenant, trusted, earlier)
    assert caught.value.tenant_id == tenant
    return caught.value


# --- the tamperings --------------------------------------------------------------------------


async def change_a_byte(db, tenant, index, _size):
    value = await db.fetchval(
        "SELECT message_value FROM ledger WHERE tenant_id = $1 AND leaf_index = $2",
        tenant,
        index,
    )
    changed = bytearray(value)
    changed[len(changed) // 2] ^= 0x01
    await db.execute(
        "UPDATE ledger SET message_value = $3 WHERE tenant_id = $1 AND leaf_index = $2",
        tenant,
        index,
        bytes(changed),
    )
    return index


async def delete_a_row(db, tenant, index, _size):
    await db.execute("DELETE FROM ledger WHERE tenant_id = $1 AND leaf_index = $2", tenant, index)
    return index


async def swap_two_rows(db, tenant, index, size):
    other = size - 1 if index < size - 1 else 0
    first, second = sorted((index, other))
    columns = "event_id, type, source, subject, version, message_value, message_headers"
    rows = {
        r["leaf_index"]: r
        for r in await db.fetch(
            f"SELECT leaf_index, {columns} FROM ledger"
            " WHERE tenant_id = $1 AND leaf_index IN ($2, $3)",
            tenant,
            first,
            second,
        )
    }
    # Event ids are unique: park one row's id while the two exchange their contents.
    await db.execute(
        "UPDATE ledger SET event_id = $3 WHERE tenant_id = $1 AND leaf_index = $2",
        tenant,
        first,
        uuid.uuid4(),
    )
    for here, there in ((second, first), (first, second)):
        row = rows[there]
        await db.execute(
            "UPDATE ledger SET event_id = $3, type = $4, source = $5, subject = $6,"
            " version = $7, message_value = $8, message_headers = $9"
            " WHERE tenant_id = $1 AND leaf_index = $2",
            tenant,
            here,
            *(row[name] for name in columns.split(", ")),
        )
    return first


async def truncate_the_tail(db, tenant, index, _size):
    await db.execute("DELETE FROM ledger WHERE tenant_id = $1 AND leaf_index >= $2", tenant, index)
    return index


async def move_to_another_tenant(db, tenant, index, _size):
    await db.execute(
        "UPDATE ledger SET tenant_id = $3 WHERE tenant_id = $1 AND leaf_index = $2",
        tenant,
        index,
        f"{tenant}-other",
    )
    return index


TAMPERINGS = [change_a_byte, delete_a_row, swap_two_rows, truncate_the_tail, move_to_another_tenant]


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda t: t.__name__)
async def test_each_tampering_is_detected_by_verify_naming_the_first_bad_index(
    reporting, pools, producer, superuser, trusted, tenant, tamper
):
    size, _ = await signed_log(pools, producer, tenant)
    report = await verify_tenant(pools["reporting"], tenant, trusted)
    assert report.size == size
    assert report.checkpoints >= 2

    bad = await tamper(superuser, tenant, 3, size)

    failure = await verify_fails_at(pools, tenant, trusted)
    assert failure.index == bad, failure


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tamper=st.sampled_from(TAMPERINGS),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
)
async def test_a_random_tampering_at_a_random_position_is_always_detected(
    reporting, pools, producer, superuser, trusted, tamper, where
):
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    size, _ = await signed_log(pools, producer, tenant)
    index = int(where * size)
    if tamper is swap_two_rows and index == size - 1:
        index = 0
    bad = await tamper(superuser, tenant, index, size)
    failure = await verify_fails_at(pools, tenant, trusted)
    assert failure.index == bad, (tamper.__name__, index, failure)


async def test_a_rehashed_fake_table_fails_the_signature_and_the_checkpoint_kept_earlier(
    reporting, pools, producer, superuser, trusted, tenant
):
    size, earlier = await signed_log(pools, producer, tenant)
    # The forger changes entry 2, recomputes every leaf, node, head and checkpoint of the
    # tenant, and signs the checkpoints with a key of their own.
    await change_a_byte(superuser, tenant, 2, size)
    rows = await superuser.fetch(
        "SELECT * FROM ledger WHERE tenant_id = $1 ORDER BY leaf_index", tenant
    )
    leaves = [leaf_hash(ledger_rows.canonical_of_row(r)) for r in rows]
    for row, leaf in zip(rows, leaves, strict=True):
        await superuser.execute(
            "UPDATE ledger SET leaf_hash = $2 WHERE position = $1", row["position"], leaf
        )
    nodes, frontier = merkle.append([], 0, leaves)
    await superuser.execute("DELETE FROM ledger_nodes WHERE tenant_id = $1", tenant)
    await superuser.executemany(
        "INSERT INTO ledger_nodes VALUES ($1, $2, $3, $4)",
        [(tenant, level, index, node) for level, index, node in nodes if level > 0],
    )
    await superuser.execute(
        "UPDATE ledger_heads SET frontier = $2 WHERE tenant_id = $1", tenant, frontier
    )
    forger = Signer.generate("itsm.local/ledger")
    for tree_size, note in await superuser.fetch(
        "SELECT tree_size, note FROM ledger_checkpoints WHERE tenant_id = $1", tenant
    ):
        del note
        prefix_frontier = merkle.append([], 0, leaves[:tree_size])[1]
        fake_root = merkle.root_of_frontier(prefix_frontier, tree_size)
        fake_note = forger.sign(Checkpoint(f"itsm.local/ledger/{tenant}", tree_size, fake_root, ()))
        await superuser.execute(
            "UPDATE ledger_checkpoints SET root_hash = $3, note = $4, key_id = $5"
            " WHERE tenant_id = $1 AND tree_size = $2",
            tenant,
            tree_size,
            fake_root,
            fake_note,
            forger.key_id,
        )

    # The ledger's own key did not sign the fake.
    failure = await verify_fails_at(pools, tenant, trusted)
    assert "trusted key" in failure.message
    # Even trusting the forger's key (the configured key file replaced too), the checkpoint the
    # auditor kept earlier does not match: the fake is caught, in the range it vouches for.
    forged = [VerifierKey.parse(forger.verifier_key), *trusted]
    failure = await verify_fails_at(pools, tenant, forged, earlier)
    assert "earlier checkpoint" in failure.message
    assert failure.index is not None and failure.index <= 2


async def test_the_self_check_counts_a_verification_failure_when_new_entries_are_altered(
    reporting, pools, producer, superuser, tenant
):
    check = SelfCheck(pools["reporting"], reporting.runtime.service_metrics, interval=60)
    for _ in range(3):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    await eventually(lambda: log_state(pools, tenant), quiet_with(3))
    assert [f for f in await check.round() if f[0] == tenant] == []
    first_size = check.verified[tenant].size
    for _ in range(3):
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    *_, found = await eventually(lambda: log_state(pools, tenant), quiet_with(6))
    ok = sample_value(
        reporting.runtime.registry, "itsm_ledger_verifications_total", {"result": "ok"}
    )
    await change_a_byte(superuser, tenant, first_size + 1, found[-1][0])

    failures = [error for failed, error in await check.round() if failed == tenant]
    assert [f.index for f in failures] == [first_size + 1]
    registry = reporting.runtime.registry
    assert sample_value(registry, "itsm_ledger_verification_failures_total") >= 1
    assert sample_value(registry, "itsm_ledger_verifications_total", {"result": "ok"}) >= ok


async def test_the_verify_command_exits_0_on_a_sound_log_and_1_naming_tenant_and_first_bad_index(
    reporting, pools, producer, superuser, settings_for, tenant, tmp_path, capsys
):
    size, earlier = await signed_log(pools, producer, tenant)
    kept = tmp_path / "checkpoint"
    kept.write_text(earlier)
    settings = settings_for("reporting")
    parser = argparse.ArgumentParser()
    verify_command.add_arguments(parser)
    args = parser.parse_args(["--tenant", tenant, "--earlier", str(kept)])

    assert await verify_command.run(args, settings) == 0
    assert f"OK: tenant {tenant}: {size} entries" in capsys.readouterr().out

    await delete_a_row(superuser, tenant, 4, size)
    assert await verify_command.run(args, settings) == 1
    out = capsys.readouterr().out
    assert f"FAILED: tenant {tenant}" in out
    assert "first bad index: 4" in out
