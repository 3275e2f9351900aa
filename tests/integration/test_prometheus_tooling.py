"""Prometheus tooling in CI: the configuration, the alert rules and their unit tests, and what
every service and outbox relay exposes on /metrics pass promtool (finding 16).

promtool comes from Debian's `prometheus` package, which deploy/local/install-system-packages.sh
installs: these tests fail, never skip, when it is missing.
"""

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from shared.registry import PUBLISHING_SERVICES
from shared.registry import SERVICE_NAMES as SERVICES
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; fail loudly when the machine lacks it."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: run deploy/local/install-system-packages.sh"
            " (Debian's prometheus package provides /usr/bin/promtool)"
        )
    result = subprocess.run(
        [binary, *args], input=stdin, capture_output=True, timeout=120, check=False
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def test_promtool_accepts_the_prometheus_configuration_from_the_repository():
    # Outside Docker, from any directory: rule files are found relative to the configuration.
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_pass_their_unit_tests():
    assert RULE_TESTS, "no rule unit tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_alert_has_a_unit_test_that_sees_it_fire():
    tested = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert alert_names() - tested == set()
    assert {"OutboxStuck", "OutboxRelayDown", "BackgroundTaskDown"} <= alert_names()
    assert "BackgroundTaskFailing" in alert_names()


def test_the_compose_prometheus_mounts_the_configuration_beside_its_rules():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    mounts = {
        volume.split(":")[1]: (REPO / volume.split(":")[0]).resolve()
        for volume in prometheus["volumes"]
    }
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    in_container = Path(config_flag.removeprefix("--config.file="))
    assert mounts[str(in_container.parent)] == CONFIG.parent
    for rule_file in yaml.safe_load(CONFIG.read_text())["rule_files"]:
        assert not Path(rule_file).is_absolute(), "an absolute path breaks promtool outside Docker"
        assert (CONFIG.parent / rule_file).is_file()


# --- promtool check metrics on what every process exposes ------------------------------------


@pytest.fixture(scope="module")
def processes(local_platform, migrated):
    """Every service as a process, and the outbox relay of each that publishes, as deployed."""
    ports = {name: free_port() for name in SERVICES}
    started = local_platform.start_services(migrated, ports, separate_relays=PUBLISHING_SERVICES)
    yield {process.name: process for process in started}
    for process in reversed(started):
        process.stop()
    local_platform.services.clear()


@pytest.mark.parametrize(
    "name", [*SERVICES, *(f"{service}-relay" for service in PUBLISHING_SERVICES)]
)
async def test_promtool_accepts_what_each_service_and_relay_exposes_on_metrics(processes, name):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{processes[name].url}/metrics")
    assert response.status_code == 200
    assert "itsm_" in response.text
    result = promtool("check", "metrics", stdin=response.content)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
