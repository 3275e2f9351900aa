"""shared/registry.py is the one list of services: every service definition, its settings, its
shared components, its consumers, the event catalogue, the topics `create-topics` makes,
docker-compose.yml, deploy/compose.env.example and the Prometheus scrape targets agree with it."""

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import yaml

import shared.kafka
from services.change.metrics import ChangeMetrics
from services.config.metrics import ConfigMetrics
from services.config.settings import ConfigSettings
from services.incident.metrics import IncidentMetrics
from services.incident.settings import IncidentSettings
from services.reporting.metrics import ReportingMetrics
from shared.auth.local import LocalKeys
from shared.events.catalogue import AUTH_REVOCATIONS, CATALOGUE
from shared.kafka import DEAD_LETTER_TOPIC, TOPICS
from shared.registry import (
    DEFAULT_HTTP_PORTS,
    PUBLISHING_SERVICES,
    SERVICE_NAMES,
    SERVICES,
    RegisteredService,
    service,
)
from shared.service import ServiceDefinition, ServiceRuntime, no_service_metrics
from shared.settings import ServiceSettings
from tests.conftest import DEFINITIONS

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
PROMETHEUS = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
COMPOSE_ENV_EXAMPLE = REPO / "deploy" / "compose.env.example"
# The port every service container listens on, and its relay's (docker-compose.yml).
CONTAINER_PORT = 8000
CONTAINER_RELAY_PORT = 8100


def test_the_registry_and_the_service_definitions_name_the_same_services():
    assert set(SERVICE_NAMES) == set(DEFINITIONS)
    assert len(SERVICE_NAMES) == len(set(SERVICE_NAMES))


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_each_definition_and_its_settings_agree_with_the_registry_entry(entry):
    definition = DEFINITIONS[entry.name]
    settings = definition.settings_class
    assert definition.name == entry.name
    assert definition.publishes == entry.relay
    assert settings.model_fields["http_port"].default == entry.http_port
    assert settings.service_name == entry.name
    assert settings.model_config.get("env_prefix") == entry.env_prefix


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_each_service_consumes_exactly_the_topics_its_registry_entry_names(entry):
    runtime: Any = SimpleNamespace(
        pool=None,
        producer=None,
        metrics=None,
        service_metrics=None,
        settings=SimpleNamespace(consumer_max_records=100),
    )
    consumers = DEFINITIONS[entry.name].consumers(runtime)
    subscribed = {topic for consumer in consumers for topic in consumer.topics}
    assert subscribed == set(entry.consumes)


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_each_services_consumer_groups_are_exactly_its_consumers_names(entry):
    runtime: Any = SimpleNamespace(
        pool=None,
        producer=None,
        metrics=None,
        service_metrics=None,
        settings=SimpleNamespace(consumer_max_records=100),
    )
    names = [consumer.name for consumer in DEFINITIONS[entry.name].consumers(runtime)]
    assert sorted(names) == sorted(entry.consumer_groups)
    assert len(set(names)) == len(names)


def test_every_catalogued_event_goes_to_its_services_registered_topic_or_a_shared_one():
    for spec in CATALOGUE.values():
        entry = service(spec.source.removeprefix("itsm/"))
        if spec.topic == AUTH_REVOCATIONS:
            # The shared revocation topic, which every service reads: the config service
            # writes it through its outbox.
            assert entry.relay, spec.type
        else:
            assert spec.topic == entry.publishes, spec.type


def test_the_topics_are_the_registrys_published_ones_and_the_shared_ones():
    published = {entry.publishes for entry in SERVICES if entry.publishes is not None}
    assert set(TOPICS) == published | {DEAD_LETTER_TOPIC, AUTH_REVOCATIONS}
    consumed = {topic for entry in SERVICES for topic in entry.consumes}
    assert consumed <= set(TOPICS)


class _RecordingAdmin:
    """Stands in for aiokafka's admin client: a broker without topics that records creations."""

    created: ClassVar[list[Any]] = []

    def __init__(self, **_options: object) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, topics: list[Any]) -> Any:
        type(self).created.extend(topics)
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in topics])


def test_create_topics_creates_the_registrys_topics(monkeypatch, capsys):
    _RecordingAdmin.created = []
    monkeypatch.setattr(shared.kafka, "AIOKafkaAdminClient", _RecordingAdmin)
    shared.kafka.main(["create-topics", "--bootstrap-servers", "127.0.0.1:9"])
    created = {topic.name: topic.num_partitions for topic in _RecordingAdmin.created}
    for entry in SERVICES:
        if entry.publishes is not None:
            assert created[entry.publishes] == shared.kafka.DEFAULT_PARTITIONS, entry.name
    assert set(created) == set(TOPICS)
    assert "itsm.incident.events" in capsys.readouterr().out


def test_publishing_services_and_default_ports_come_from_the_entries():
    assert tuple(e.name for e in SERVICES if e.publishes is not None) == PUBLISHING_SERVICES
    assert dict(DEFAULT_HTTP_PORTS) == {e.name: e.http_port for e in SERVICES}
    assert len(set(DEFAULT_HTTP_PORTS.values())) == len(SERVICES)


def _definition(name: str, components: tuple[str, ...]) -> ServiceDefinition[ServiceSettings, None]:
    return ServiceDefinition(
        name=name,
        settings_class=ServiceSettings,
        migrations=REPO / "services" / name / "migrations",
        service_metrics=no_service_metrics,
        shared_components=components,
    )


@pytest.mark.parametrize(
    ("name", "settings_class", "metrics_class"),
    [
        ("incident", IncidentSettings, IncidentMetrics),
        ("config", ConfigSettings, ConfigMetrics),
        ("change", None, ChangeMetrics),
        ("reporting", None, ReportingMetrics),
    ],
)
def test_a_runtime_has_its_services_own_settings_and_metrics_as_attributes(
    name, settings_class, metrics_class, tmp_path
):
    definition = DEFINITIONS[name]
    keys = LocalKeys(tmp_path / "auth")
    keys.issuer()
    settings = definition.settings_class(
        database_url="postgresql://nobody@127.0.0.1:9/none",
        kafka_bootstrap_servers="127.0.0.1:9",
        auth_jwks_file=keys.jwks_file,
    )
    runtime = ServiceRuntime(definition, settings)
    assert runtime.settings is settings
    assert isinstance(runtime.settings, settings_class or definition.settings_class)
    assert type(runtime.service_metrics) is metrics_class


def test_a_definition_without_the_outbox_of_a_service_the_registry_publishes_from_is_refused():
    with pytest.raises(
        ValueError, match=r"'reporting'.*publishes to itsm.reporting.events: the outbox must match"
    ):
        _definition("reporting", ("inbox", "idempotency"))


def test_a_definition_without_the_outbox_of_a_publishing_service_is_refused():
    with pytest.raises(ValueError, match=r"publishes to itsm.change.events: the outbox must match"):
        _definition("change", ("inbox", "idempotency"))


def test_a_definition_of_a_consuming_service_without_the_inbox_is_refused():
    with pytest.raises(
        ValueError, match=r"consumes itsm.config.events, itsm.change.events: it needs"
    ):
        _definition("incident", ("outbox", "idempotency"))


def test_a_definition_naming_an_unknown_or_repeated_shared_component_is_refused():
    with pytest.raises(ValueError, match=r"no shared component 'ledger' in shared/migrations"):
        _definition("reporting", ("inbox", "ledger"))
    with pytest.raises(ValueError, match=r"named twice"):
        _definition("reporting", ("inbox", "inbox"))


def test_a_definition_of_a_service_the_registry_does_not_know_is_refused():
    with pytest.raises(KeyError, match=r"no service 'billing' in shared/registry.py"):
        _definition("billing", ())


# The variables deploy/compose.env.example sets (or shows, commented out, for production).
_EXAMPLE_VARIABLE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
# What each service needs there: its database password and its Kafka user (for SASL).
_PER_SERVICE = ("DB_PASSWORD", "KAFKA_USER", "KAFKA_PASSWORD")


def test_the_compose_env_example_names_exactly_the_registrys_per_service_variables():
    example = set(_EXAMPLE_VARIABLE.findall(COMPOSE_ENV_EXAMPLE.read_text()))
    prefixes = tuple(entry.env_prefix for entry in SERVICES)
    per_service = {name for name in example if name.endswith(_PER_SERVICE)}
    wanted = {prefix + suffix for prefix in prefixes for suffix in _PER_SERVICE}
    assert per_service == wanted


def test_the_compose_env_example_names_every_variable_docker_compose_reads():
    example = set(_EXAMPLE_VARIABLE.findall(COMPOSE_ENV_EXAMPLE.read_text()))
    compose_text = (REPO / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert read, "docker-compose.yml interpolates no variable: the pattern is wrong"
    assert read <= example, f"missing from compose.env.example: {sorted(read - example)}"


def test_a_service_not_in_the_registry_is_refused_naming_the_known_ones():
    with pytest.raises(
        KeyError, match=r"no service 'billing' .*known: incident, change, config, reporting"
    ):
        service("billing")


def test_a_registered_service_cannot_be_changed_at_run_time():
    entry = service("incident")
    with pytest.raises(AttributeError):
        entry.http_port = 9000  # type: ignore[misc]
    with pytest.raises(TypeError):
        DEFAULT_HTTP_PORTS["incident"] = 9000  # type: ignore[index]


def _command(compose_service: dict[str, Any]) -> list[str]:
    return list(compose_service.get("command", []))


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_docker_compose_runs_each_service_on_its_registered_port(entry: RegisteredService):
    container = COMPOSE[entry.name]
    assert _command(container) == ["python", "-m", f"services.{entry.name}"]
    assert container["ports"] == [f"{entry.http_port}:{CONTAINER_PORT}"]
    env = container["environment"]
    assert env[f"{entry.env_prefix}HTTP_PORT"] == str(CONTAINER_PORT)
    database_url = env[f"{entry.env_prefix}DATABASE_URL"]
    assert database_url.startswith(f"postgresql://{entry.name}:"), database_url
    assert database_url.endswith("/itsm"), database_url


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_docker_compose_runs_a_separate_relay_for_exactly_the_services_that_publish(
    entry: RegisteredService,
):
    relay_name = f"{entry.name}-relay"
    env = COMPOSE[entry.name]["environment"]
    if not entry.relay:
        assert relay_name not in COMPOSE
        assert f"{entry.env_prefix}OUTBOX_RELAY" not in env
        return
    assert env[f"{entry.env_prefix}OUTBOX_RELAY"] == "separate"
    relay = COMPOSE[relay_name]
    assert _command(relay) == ["python", "-m", f"services.{entry.name}", "relay"]
    relay_env = relay["environment"]
    assert relay_env[f"{entry.env_prefix}OUTBOX_RELAY_HTTP_PORT"] == str(CONTAINER_RELAY_PORT)
    # The relay runs with the service's own configuration (the same database and Kafka user).
    for key in (f"{entry.env_prefix}DATABASE_URL", f"{entry.env_prefix}KAFKA_SASL_USERNAME"):
        assert relay_env[key] == env[key]


def test_docker_compose_runs_no_service_the_registry_does_not_know():
    run = {
        command[2].removeprefix("services.")
        for command in map(_command, COMPOSE.values())
        if command[:2] == ["python", "-m"] and command[2].startswith("services.")
    }
    assert run == set(SERVICE_NAMES)


def test_docker_compose_provisions_a_database_password_for_every_registered_service():
    env = COMPOSE["db-init"]["environment"]
    passwords = {key for key in env if key.endswith("_DB_PASSWORD")}
    assert passwords == {f"{entry.env_prefix}DB_PASSWORD" for entry in SERVICES}


def test_prometheus_scrapes_every_registered_service_and_relay():
    targets = {
        job["job_name"]: {t for config in job["static_configs"] for t in config["targets"]}
        for job in PROMETHEUS["scrape_configs"]
    }
    assert targets["itsm"] == {f"{name}:{CONTAINER_PORT}" for name in SERVICE_NAMES}
    assert targets["itsm-relays"] == {
        f"{name}-relay:{CONTAINER_RELAY_PORT}" for name in PUBLISHING_SERVICES
    }
