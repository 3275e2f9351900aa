"""The one list of the platform's services: what provisioning, the local platform, topic
creation, the test fixtures and the docker-compose check read (plain data, no service imports).

`tests/unit/test_service_registry.py` checks each `services/<name>/definition.py`, its settings
and `docker-compose.yml` against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared.events.catalogue import (
    AUTH_REVOCATIONS,
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    INCIDENT_EVENTS,
    REPORTING_EVENTS,
)


@dataclass(frozen=True)
class RegisteredService:
    """One service: its database role and schema, default HTTP port, and the topics it uses."""

    name: str
    # Its PostgreSQL schema, owned by the login role of the same name as the service.
    schema: str
    http_port: int
    # The topic its outbox relay publishes to; None for a service that writes no events.
    publishes: str | None = None
    # The topics its event consumers subscribe to.
    consumes: tuple[str, ...] = ()
    # Whether it keeps the CMDB graph projection (shared/cmdb/) in its schema: the `cmdb`
    # migration component and the `<name>-cmdb-projection` consumer.
    keeps_cmdb: bool = False
    # The names of its event consumers, each a Kafka consumer group of its own (what the
    # per-service Kafka ACLs, the KEDA lag triggers and the dashboards name).
    consumer_groups: tuple[str, ...] = ()

    @property
    def relay(self) -> bool:
        """Whether it runs an outbox relay (deployed as a process of its own, `<name>-relay`)."""
        return self.publishes is not None

    @property
    def env_prefix(self) -> str:
        """The prefix of its environment variables (`INCIDENT_DATABASE_URL`)."""
        return self.name.upper() + "_"


SERVICES: tuple[RegisteredService, ...] = (
    RegisteredService(
        "incident",
        schema="incident",
        http_port=8001,
        publishes=INCIDENT_EVENTS,
        consumes=(CONFIG_EVENTS, CHANGE_EVENTS),
        keeps_cmdb=True,
        consumer_groups=(
            "incident-cmdb-projection",
            "incident-config-projection",
            "incident-change-correlation",
            "incident-problem-changes",
        ),
    ),
    RegisteredService(
        "change",
        schema="change",
        http_port=8002,
        publishes=CHANGE_EVENTS,
        consumes=(CONFIG_EVENTS, INCIDENT_EVENTS),
        keeps_cmdb=True,
        consumer_groups=(
            "change-cmdb-projection",
            "change-incident-projection",
            "change-unauthorized",
            "change-problem-requests",
            "change-calendar-projection",
        ),
    ),
    RegisteredService(
        "config",
        schema="config",
        http_port=8003,
        publishes=CONFIG_EVENTS,
        consumes=(CHANGE_EVENTS,),
        consumer_groups=("config-change-projection",),
    ),
    RegisteredService(
        "reporting",
        schema="reporting",
        http_port=8004,
        publishes=REPORTING_EVENTS,
        consumes=(
            INCIDENT_EVENTS,
            CHANGE_EVENTS,
            CONFIG_EVENTS,
            REPORTING_EVENTS,
            AUTH_REVOCATIONS,
        ),
        consumer_groups=("reporting-ledger",),
    ),
)
SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
# The services that write events through an outbox, whose relay can run as a process of its own.
PUBLISHING_SERVICES: tuple[str, ...] = tuple(s.name for s in SERVICES if s.relay)
DEFAULT_HTTP_PORTS: Mapping[str, int] = MappingProxyType({s.name: s.http_port for s in SERVICES})
_BY_NAME = {s.name: s for s in SERVICES}


def service(name: str) -> RegisteredService:
    """The registered service of that name; KeyError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise KeyError(f"no service {name!r} in shared/registry.py (known: {known})") from None
