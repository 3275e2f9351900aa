"""A service's outbox relay can run as a process of its own: which services have one, and how a
service without an outbox refuses to start one."""

import pytest

from services.reporting.settings import ReportingSettings
from shared.registry import PUBLISHING_SERVICES
from shared.service import RelayRuntime, main
from tests.conftest import DEFINITIONS


def test_the_local_platform_runs_a_relay_for_exactly_the_services_that_publish():
    publishing = {name for name, definition in DEFINITIONS.items() if definition.publishes}
    assert set(PUBLISHING_SERVICES) == publishing


def test_a_service_without_an_outbox_has_no_relay_to_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REPORTING_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("AUTH_JWKS_FILE", str(tmp_path / "jwks.json"))
    with pytest.raises(ValueError, match="writes no outbox"):
        RelayRuntime(DEFINITIONS["reporting"], ReportingSettings())
    with pytest.raises(SystemExit) as exit_:
        main(DEFINITIONS["reporting"], ["relay"])
    assert exit_.value.code == 2
    assert "the reporting service writes no outbox: nothing to relay" in capsys.readouterr().err
