"""A service's outbox relay can run as a process of its own: which services have one, and how a
service without an outbox refuses to start one."""

import pytest

from shared import registry
from shared.registry import PUBLISHING_SERVICES, RegisteredService
from shared.service import RelayRuntime, ServiceDefinition, main, no_service_metrics
from shared.settings import ServiceSettings
from tests.conftest import DEFINITIONS


def test_the_local_platform_runs_a_relay_for_exactly_the_services_that_publish():
    publishing = {name for name, definition in DEFINITIONS.items() if definition.publishes}
    assert set(PUBLISHING_SERVICES) == publishing


def test_a_service_without_an_outbox_has_no_relay_to_run(monkeypatch, tmp_path, capsys):
    # Every service of the platform publishes today: a registry entry of one that does not
    # (an archive reader, say) shows the guard.
    archive = RegisteredService("archive", schema="archive", http_port=8009)
    monkeypatch.setitem(registry._BY_NAME, "archive", archive)
    definition = ServiceDefinition(
        name="archive",
        settings_class=ServiceSettings,
        migrations=tmp_path,
        service_metrics=no_service_metrics,
        shared_components=(),
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("AUTH_JWKS_FILE", str(tmp_path / "jwks.json"))
    settings = ServiceSettings(database_url="postgresql://x", auth_jwks_file=tmp_path / "j.json")
    with pytest.raises(ValueError, match="writes no outbox"):
        RelayRuntime(definition, settings)
    with pytest.raises(SystemExit) as exit_:
        main(definition, ["relay"])
    assert exit_.value.code == 2
    assert "the archive service writes no outbox: nothing to relay" in capsys.readouterr().err
