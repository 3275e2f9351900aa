"""A service's outbox relay as a process of its own (OUTBOX_RELAY=separate), as deployed: the
service writes events into its outbox, only the relay process publishes them, and what is
written while no relay runs waits in the outbox until one does."""

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.conftest import free_port
from tests.support import end_offsets, eventually, fetchval_as, read_topic


@pytest.fixture(scope="module")
def processes(local_platform, migrated):
    port = free_port()
    service, relay = local_platform.start_services(
        migrated, {"config": port}, separate_relays=("config",)
    )
    running = {"service": service, "relay": relay, "port": port}
    yield running
    for process in (running["relay"], service):
        process.stop()
    local_platform.services.clear()


def published(metrics_text: str) -> float:
    """itsm_outbox_published_total of the config events topic (0 if absent; by default the
    metrics name no tenant)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == "itsm_outbox_published_total" and s.labels.get("topic") == CONFIG_EVENTS
    )


async def create_ci(client, url, headers):
    response = await client.post(
        f"{url}/cis",
        json={
            "class": "server",
            "name": "relay-host",
            "criticality": 2,
            "attributes": {"hostname": "relay-host", "environment": "production"},
            "external_ids": {"vcenter": f"host-{uuid.uuid4().hex[:8]}"},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def created_event_of(ci_id):
    def seen(records):
        return any(from_kafka(r.value, r.headers).subject == ci_id for r in records)

    return seen


async def test_the_relay_process_is_live_ready_and_exposes_the_outbox_metrics(processes):
    relay = processes["relay"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{relay.url}/health/live")).status_code == 200
        ready = await client.get(f"{relay.url}/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {
            "database": "ok",
            "migrations": "ok",
            "kafka": "ok",
            "relay": "ok",
        }
        metrics = (await client.get(f"{relay.url}/metrics")).text
    families = {f.name for f in text_string_to_metric_families(metrics)}
    assert {"itsm_outbox_backlog", "itsm_outbox_published"} <= families


async def test_the_service_writes_events_and_only_the_relay_process_publishes_them(
    processes, migrated, auth, tenant
):
    service, relay = processes["service"], processes["relay"]
    start = await end_offsets(migrated.bootstrap_servers, CONFIG_EVENTS)
    async with httpx.AsyncClient() as client:
        ci_id = await create_ci(client, service.url, auth(tenant, "config_manager"))
        await read_topic(migrated.bootstrap_servers, start, until=created_event_of(ci_id))

        async def relay_count():
            return published((await client.get(f"{relay.url}/metrics")).text)

        assert await eventually(relay_count, lambda n: n >= 1) >= 1
        assert published((await client.get(f"{service.url}/metrics")).text) == 0


async def test_events_written_while_no_relay_runs_wait_in_the_outbox_until_one_does(
    processes, local_platform, migrated, pools, auth, tenant
):
    processes["relay"].stop()
    start = await end_offsets(migrated.bootstrap_servers, CONFIG_EVENTS)
    async with httpx.AsyncClient() as client:
        ci_id = await create_ci(client, processes["service"].url, auth(tenant, "config_manager"))

    async def waiting():
        return await fetchval_as(
            pools["config"], tenant, "SELECT count(*) FROM outbox WHERE message_key = $1", ci_id
        )

    assert await waiting() == 1
    # The service does not publish it, however long it waits (it polls its outbox every second
    # when it relays): a few polls later the event is still there and not in Kafka.
    with pytest.raises(AssertionError, match="condition not met"):
        await read_topic(
            migrated.bootstrap_servers, start, until=created_event_of(ci_id), timeout=3
        )
    assert await waiting() == 1

    processes["relay"] = local_platform.start_relay(migrated, "config", processes["port"])
    await read_topic(migrated.bootstrap_servers, start, until=created_event_of(ci_id))
    assert await eventually(waiting, lambda n: n == 0) == 0
