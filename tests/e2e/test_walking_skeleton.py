"""The platform as the README's run command starts it: an incident reaches the ledger."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.registry import SERVICE_NAMES
from tests.conftest import free_port
from tests.support import eventually


@pytest.fixture(scope="module")
def services(local_platform, migrated):
    ports = {name: free_port() for name in SERVICE_NAMES}
    started = local_platform.start_services(migrated, ports)
    yield {s.name: s.url for s in started}
    for service in started:
        service.stop()
    local_platform.services.clear()


async def test_every_service_process_is_live_ready_and_exposes_metrics(services):
    async with httpx.AsyncClient() as client:
        for name, url in services.items():
            assert (await client.get(f"{url}/health/live")).status_code == 200, name
            ready = await client.get(f"{url}/health/ready")
            assert ready.status_code == 200, (name, ready.text)
            metrics = await client.get(f"{url}/metrics")
            families = {f.name for f in text_string_to_metric_families(metrics.text)}
            assert "itsm_http_requests" in families, name
            openapi = await client.get(f"{url}/openapi.json")
            assert openapi.status_code == 200, name
            # Its event contract, as `python -m services.<name>` serves it (no token).
            contract = await client.get(f"{url}/asyncapi.json")
            assert contract.status_code == 200, name
            assert contract.json()["info"]["title"] == f"ITSM {name} service events"


async def test_an_incident_posted_over_http_appears_in_the_reporting_ledger(services, auth, tenant):
    async with httpx.AsyncClient() as client:
        created = await client.post(
            f"{services['incident']}/incidents",
            json={
                "title": "Checkout is slow",
                "description": "p95 at 4 s",
                "impact": 2,
                "urgency": 1,
            },
            headers={
                **auth(tenant, "integration", subject="monitoring"),
                "X-Correlation-Id": "e2e-1",
            },
        )
        assert created.status_code == 201, created.text
        incident = created.json()

        async def ledger():
            response = await client.get(
                f"{services['reporting']}/ledger",
                params={"subject": incident["id"]},
                headers=auth(tenant, "auditor"),
            )
            assert response.status_code == 200, response.text
            return response.json()["items"]

        [entry] = await eventually(ledger, lambda items: len(items) >= 1)
        assert entry["type"] == "itsm.incident.created.v1"
        assert entry["version"] == 1
        assert entry["actor"] == "monitoring"
        assert entry["correlation_id"] == "e2e-1"
        assert entry["data"]["priority"] == incident["priority"] == 2

        other_tenant = await client.get(
            f"{services['reporting']}/ledger",
            params={"subject": incident["id"]},
            headers=auth("not-" + tenant, "auditor"),
        )
        assert other_tenant.json()["items"] == []

        metrics = (await client.get(f"{services['reporting']}/metrics")).text
        counted = [
            s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.name == "itsm_consumer_events_total"
            and s.labels.get("type") == "itsm.incident.created.v1"
        ]
        assert counted and counted[0] >= 1
