"""The dashboards against the running platform: a real Prometheus server, configured with the
repository's scrape jobs (deploy/prometheus/prometheus.yml, each target at the address of its
local process), scrapes every service and outbox relay; every expression of every dashboard
evaluates without error, and the panels an operator reads first show what the platform does.

The server comes from Debian's `prometheus` package, as promtool does
(deploy/local/install-system-packages.sh): these tests fail, never skip, when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.registry import PUBLISHING_SERVICES, SERVICE_NAMES
from tests.conftest import free_port
from tests.grafana_support import DASHBOARDS, EXPRESSIONS, REPO, Expression, variable_values
from tests.support import eventually

SCRAPE_CONFIG = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
RELAYS = [f"{name}-relay" for name in PUBLISHING_SERVICES]


@pytest.fixture(scope="module")
def processes(local_platform, migrated):
    """Every service as a process, and the outbox relay of each that publishes, as deployed."""
    ports = {name: free_port() for name in SERVICE_NAMES}
    started = local_platform.start_services(migrated, ports, separate_relays=PUBLISHING_SERVICES)
    yield {process.name: process for process in started}
    for process in reversed(started):
        process.stop()
    local_platform.services.clear()


def local_scrape_config(processes: dict[str, Any]) -> dict[str, Any]:
    """The repository's scrape jobs, every target (`incident:8000`) at its process's address,
    scraped every second."""
    jobs = []
    for job in SCRAPE_CONFIG["scrape_configs"]:
        targets = [
            f"127.0.0.1:{processes[target.split(':')[0]].port}"
            for config in job["static_configs"]
            for target in config["targets"]
        ]
        jobs.append({**job, "static_configs": [{"targets": targets}]})
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    }


@pytest.fixture(scope="module")
def prometheus(processes, tmp_path_factory) -> Iterator[str]:
    """A Prometheus server scraping the platform; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the Prometheus server is not installed: run deploy/local/install-system-packages.sh"
            " (Debian's prometheus package provides /usr/bin/prometheus)"
        )
    folder: Path = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_scrape_config(processes)))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def query(client: httpx.AsyncClient, url: str, promql: str) -> dict[str, Any]:
    """Prometheus's answer to an instant query (status, data or error)."""
    response = await client.get(f"{url}/api/v1/query", params={"query": promql})
    answer: dict[str, Any] = response.json()
    return answer


async def series(client: httpx.AsyncClient, url: str, promql: str) -> dict[str, float]:
    """The instant query's series, each named by its labels but the metric name ("a=1,b=2"),
    with its value."""
    answer = await query(client, url, promql)
    assert answer["status"] == "success", answer
    return {
        ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items()) if k != "__name__"): float(
            item["value"][1]
        )
        for item in answer["data"]["result"]
    }


async def scraped(client: httpx.AsyncClient, url: str, times: int) -> None:
    """Wait until Prometheus has scraped every target at least `times` times."""
    targets = len(SERVICE_NAMES) + len(RELAYS)

    async def counts() -> dict[str, float]:
        try:
            return await series(client, url, "count_over_time(up[1m])")
        except httpx.TransportError:  # the server is still starting
            return {}

    await eventually(
        counts,
        lambda found: len(found) == targets and min(found.values()) >= times,
        timeout=60,
    )


def panel_expression(dashboard: str, title: str) -> str:
    """The first query of a panel, its variables replaced as when the dashboard opens."""
    board = DASHBOARDS[dashboard]
    panel = next(p for p in board["panels"] if p.get("title") == title)
    target = panel["targets"][0]
    return Expression(dashboard, title, target["expr"], variable_values(board)).substituted()


async def test_every_dashboard_expression_evaluates_on_a_prometheus_scraping_the_platform(
    prometheus,
):
    async with httpx.AsyncClient(timeout=30) as client:
        await scraped(client, prometheus, times=3)
        failed = []
        for expression in EXPRESSIONS:
            answer = await query(client, prometheus, expression.substituted())
            if answer["status"] != "success":
                failed.append(f"{expression}: {answer.get('error')}")
    assert not failed


async def test_platform_health_shows_every_process_up_and_no_background_task_down(prometheus):
    async with httpx.AsyncClient(timeout=30) as client:
        await scraped(client, prometheus, times=2)
        up = await series(client, prometheus, panel_expression("platform-health.json", "Up"))
        assert len(up) == len(SERVICE_NAMES) + len(RELAYS)
        assert set(up.values()) == {1.0}
        jobs = {name.split(",")[1] for name in up}
        assert jobs == {"job=itsm", "job=itsm-relays"}
        down = await series(
            client, prometheus, panel_expression("platform-health.json", "Background tasks down")
        )
        assert list(down.values()) == [0.0]


async def test_an_incident_shows_on_the_incident_request_and_ledger_panels(
    prometheus, processes, auth, tenant
):
    async with httpx.AsyncClient(timeout=30) as client:

        async def log_an_incident() -> None:
            created = await client.post(
                f"{processes['incident'].url}/incidents",
                json={"title": "Checkout is slow", "description": "", "impact": 2, "urgency": 1},
                headers=auth(tenant, "integration", subject="monitoring"),
            )
            assert created.status_code == 201, created.text

        logged = panel_expression("incidents.json", "Logged and resolved")
        # A counter's first sample is where increase() starts from: the first incident makes
        # the series appear, the next one shows as an increase.
        await log_an_incident()
        await eventually(lambda: series(client, prometheus, logged), lambda f: "origin=manual" in f)
        await log_an_incident()
        found = await eventually(
            lambda: series(client, prometheus, logged),
            lambda found: found.get("origin=manual", 0) > 0,
        )
        assert set(found) <= {"origin=manual", "origin=alertmanager", "origin=events"}

        incident = f"127.0.0.1:{processes['incident'].port}"
        rate = panel_expression("platform-health.json", "Request rate")
        await eventually(
            lambda: series(client, prometheus, rate),
            lambda found: found.get(f"instance={incident}", 0) > 0,
        )
        # The reporting service records the event in its tenant's ledger (tenant label `_all`).
        entries = panel_expression("platform-health.json", "Ledger entries")
        await eventually(
            lambda: series(client, prometheus, entries),
            lambda found: found.get("tenant=_all", 0) >= 1,
            timeout=60,
        )
