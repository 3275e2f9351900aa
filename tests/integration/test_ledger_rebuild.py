"""`python -m services.reporting rebuild`: the verifiable log rebuilt from Kafka, on the real
broker and database.

Events of several topics and partitions, two tenants interleaved, go through the reporting
service, which signs checkpoints (their events carry the order of the entries). The rebuild
then agrees with the stored ledger (`--check`), fills a fresh database with the same leaves
and roots (`--into-empty`), and names the first differing index once a stored leaf is changed.
"""

import argparse
import base64
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from services.reporting.adapters import log
from services.reporting.commands import rebuild
from services.reporting.definition import DEFINITION
from shared.db import all_tenants_transaction, create_pool, migrate, set_tenant
from shared.events.envelope import new_envelope
from shared.provision import provision
from shared.registry import SERVICE_NAMES
from tests.support import eventually, fetch_as, send_event

CHECKPOINT_TYPE = "itsm.reporting.ledger.checkpoint_signed.v1"


def events_of(tenant):
    """Incidents (several partitions: one key each), CIs and a change, of one tenant."""
    out = []
    for n in range(6):
        incident = str(uuid.uuid4())
        out.append(
            (
                "itsm.incident.events",
                new_envelope(
                    source="itsm/incident",
                    type="itsm.incident.created.v1",
                    subject=incident,
                    tenantid=tenant,
                    itsmversion=1,
                    actor="alice",
                    data={
                        "title": f"Disk {n} full",
                        "description": "\u0000 kept as sent",
                        "impact": 2,
                        "urgency": 2,
                        "priority": 3,
                        "state": "new",
                    },
                ),
            )
        )
        ci = str(uuid.uuid4())
        out.append(
            (
                "itsm.config.events",
                new_envelope(
                    source="itsm/config",
                    type="itsm.config.relationship.added.v1",
                    subject=ci,
                    tenantid=tenant,
                    itsmversion=1,
                    actor="bob",
                    data={
                        "relationship": {
                            "id": ci,
                            "type": "depends_on",
                            "source_id": str(uuid.uuid4()),
                            "target_id": str(uuid.uuid4()),
                        }
                    },
                ),
            )
        )
    change = str(uuid.uuid4())
    out.append(
        (
            "itsm.change.events",
            new_envelope(
                source="itsm/change",
                type="itsm.change.implemented.v1",
                subject=change,
                tenantid=tenant,
                itsmversion=1,
                actor="carol",
                data={
                    "change_id": change,
                    "title": "patch",
                    "ci_ids": [],
                    "implemented_at": datetime.now(UTC).isoformat(),
                },
            ),
        )
    )
    return out


async def settled(pools, tenant):
    """The tenant's newest checkpoint event is in its log, and every entry but checkpoint
    events is covered by a checkpoint: what Kafka holds orders the whole log but its tail."""
    pool = pools["reporting"]
    rows = await fetch_as(
        pool,
        tenant,
        "SELECT h.size, (SELECT max(tree_size) FROM ledger_checkpoints c) AS signed,"
        " (SELECT max((data->>'tree_size')::bigint) FROM ledger WHERE type = $1) AS logged,"
        " (SELECT count(*) FROM ledger WHERE type <> $1 AND leaf_index >="
        "  coalesce((SELECT max(tree_size) FROM ledger_checkpoints), 0)) AS uncovered,"
        " (SELECT count(*) FROM ledger WHERE source <> 'itsm/reporting') AS recorded"
        " FROM ledger_heads h",
        CHECKPOINT_TYPE,
    )
    return rows[0] if rows else None


def is_settled(row, sent):
    return (
        row is not None
        and row["recorded"] == sent
        and row["signed"] is not None
        and row["logged"] == row["signed"]
        and row["uncovered"] == 0
    )


async def run(settings, *tenants, check=False, into_empty=False):
    args = argparse.Namespace(tenant=list(tenants), check=check, into_empty=into_empty)
    return await rebuild.run(args, settings)


async def fresh_database(infra, name):
    """A new database with the platform's roles and schemas, the reporting schema migrated;
    the reporting role's DSN for it."""
    passwords = {
        service: urlsplit(infra.service_dsns[service]).password for service in SERVICE_NAMES
    }
    await provision(infra.admin_dsn, passwords, database=name)
    parts = urlsplit(infra.service_dsns["reporting"])
    dsn = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, DEFINITION.migration_sources())
    finally:
        await conn.close()
    return dsn


async def roots(pool, tenant):
    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, tenant)
        checkpoints = await conn.fetch(
            "SELECT tree_size, root_hash FROM ledger_checkpoints ORDER BY tree_size"
        )
        return [
            (c["tree_size"], bytes(c["root_hash"]), await log.root_at(conn, tenant, c["tree_size"]))
            for c in checkpoints
        ]


async def test_the_log_rebuilt_from_kafka_has_the_same_leaves_and_roots_and_refills_a_lost_database(
    service_client, infra, pools, producer, settings_for, capsys
):
    first, second = (f"t-{uuid.uuid4().hex[:12]}" for _ in range(2))
    await service_client("reporting", checkpoint_interval_seconds=0.3)
    batches = [events_of(first), events_of(second)]
    # Interleaved: the tenants' events alternate, over three topics and several partitions,
    # in two waves so that the logs get more than one checkpoint.
    sent = 0
    for wave in (slice(0, 7), slice(7, None)):
        for pair in zip(batches[0][wave], batches[1][wave], strict=True):
            for topic, envelope in pair:
                await send_event(producer, envelope, topic)
        sent += len(batches[0][wave])
        for tenant in (first, second):
            await eventually(
                lambda t=tenant: settled(pools, t), lambda r, n=sent: is_settled(r, n), timeout=60
            )

    settings = settings_for("reporting")
    assert await run(settings, first, second) == 0, capsys.readouterr().out
    status = await run(settings, first, second, check=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("the stored ledger agrees") == 2, out
    assert "FAILED" not in out and "DIFFERS" not in out

    # A database lost: the ledger restored from Kafka into a fresh one has the same roots.
    name = f"restore_{uuid.uuid4().hex[:8]}"
    dsn = await fresh_database(infra, name)
    restored = settings.model_copy(update={"database_url": SecretStr(dsn)})
    status = await run(restored, first, second, into_empty=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("stored checkpoints verify against them") == 2, out
    pool = await create_pool(dsn, schema="reporting", application_name="test-restore")
    try:
        for tenant in (first, second):
            original = await roots(pools["reporting"], tenant)
            again = await roots(pool, tenant)
            assert len(original) >= 2
            assert again == original
            assert all(signed == computed for _, signed, computed in again)
        status = await run(restored, first, second, check=True)
        assert status == 0, capsys.readouterr().out

        # Refilling a ledger that is not empty is refused.
        assert await run(restored, first, into_empty=True) == 1
        assert "not empty" in capsys.readouterr().out

        # A stored leaf changed behind the ledger's back: --check names its index.
        async with all_tenants_transaction(pool) as conn:
            size = await conn.fetchval(
                "SELECT max(tree_size) FROM ledger_checkpoints WHERE tenant_id = $1", second
            )
        admin = await asyncpg.connect(
            urlunsplit((*urlsplit(infra.admin_dsn)[:2], "/" + name, "", ""))
        )
        try:
            await admin.execute("SET session_replication_role = replica")
            await admin.execute(
                "UPDATE reporting.ledger SET leaf_hash = sha256(leaf_hash)"
                " WHERE tenant_id = $1 AND leaf_index = $2",
                second,
                size // 2,
            )
        finally:
            await admin.close()
        assert await run(restored, first, second, check=True) == 1
        out = capsys.readouterr().out
        assert f"tenant {second}: DIFFERS: first differing index {size // 2}:" in out, out
        assert f"tenant {first}: the stored ledger agrees" in out
    finally:
        await pool.close()


async def test_a_checkpoint_whose_root_does_not_match_the_rebuilt_log_is_reported(
    service_client, pools, producer, settings_for, capsys
):
    """The rebuild checks each signed checkpoint: a checkpoint event claiming another root
    (a forged or corrupted announcement) fails the rebuild, naming its size."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    await service_client("reporting", checkpoint_interval_seconds=0.3)
    for topic, envelope in events_of(tenant)[:4]:
        await send_event(producer, envelope, topic)
    row = await eventually(lambda: settled(pools, tenant), lambda r: is_settled(r, 4), timeout=60)
    settings = settings_for("reporting")
    assert await run(settings, tenant) == 0
    capsys.readouterr()
    [(data,)] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT data FROM ledger WHERE type = $1 AND (data->>'tree_size')::bigint = $2",
        CHECKPOINT_TYPE,
        row["signed"],
    )
    forged = {
        **data,
        "tree_size": row["signed"] + 1000,
        "previous_size": row["signed"],
        "runs": [],
        "root_hash": base64.b64encode(b"\x00" * 32).decode(),
    }
    await send_event(
        producer,
        new_envelope(
            source="itsm/reporting",
            type=CHECKPOINT_TYPE,
            subject="ledger",
            tenantid=tenant,
            itsmversion=999,
            actor="mallory",
            data=forged,
        ),
        "itsm.reporting.events",
    )
    await eventually(
        lambda: fetch_as(
            pools["reporting"], tenant, "SELECT 1 FROM ledger WHERE actor = 'mallory'"
        ),
        lambda rows: len(rows) == 1,
    )
    assert await run(settings, tenant) == 1
    out = capsys.readouterr().out
    forged_size = row["signed"] + 1000
    assert f"tenant {tenant}: FAILED: the checkpoint at size {forged_size}" in out, out
