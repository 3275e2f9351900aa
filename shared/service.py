"""A service process: its pool, migrations, producer, consumers, outbox relay and HTTP app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry
from typing_extensions import TypeVar

from shared.auth.revocations import RevocationList, RevocationListener, RevocationMetrics
from shared.auth.tokens import TokenVerifier
from shared.db import (
    SHARED_MIGRATIONS,
    MigrationSource,
    create_pool,
    known_versions,
    migrate,
    pending_migrations,
    shared_source,
)
from shared.events.asyncapi import service_document
from shared.http.app import create_app
from shared.http.idempotency import purge_expired
from shared.http.server import server_config
from shared.inbox import EventConsumer
from shared.kafka import bootstrap_list, broker_security, create_producer, kafka_options
from shared.logging import configure_logging
from shared.metrics import PlatformMetrics, TenantLabel
from shared.outbox import OutboxRelay
from shared.registry import RegisteredService, service
from shared.settings import ServiceSettings
from shared.supervision import BackgroundTask, SupervisionMetrics, Supervisor

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 600.0
MIGRATION_WAIT_SECONDS = 1.0
# The exit status of a process whose background task stayed down past its limit (EX_SOFTWARE).
EXIT_GAVE_UP = 70
STOP_STEP_SECONDS = 15.0


# A service's settings and metrics types. A runtime named without them (`ServiceRuntime`, as
# entry points that need neither write it) has the base settings and untyped metrics. Covariant:
# a consumer factory written for any runtime serves the runtime of one service.
SettingsT = TypeVar("SettingsT", bound=ServiceSettings, default=ServiceSettings, covariant=True)
MetricsT = TypeVar("MetricsT", default=Any, covariant=True)


def no_service_metrics(_registry: CollectorRegistry) -> None:
    """The `service_metrics` of a service that has no metrics of its own."""
    return None


def _nothing(_runtime: object) -> tuple[()]:
    # The default of `consumers` and `background`: a service without any.
    return ()


@dataclass(frozen=True, kw_only=True)
class ServiceDefinition(Generic[SettingsT, MetricsT]):
    """Everything that makes one service different from another.

    Typed by its settings and metrics: the runtime it gets in `consumers` and `background` has
    `settings` and `service_metrics` of those types. The shared components it installs are
    checked against its entry in shared/registry.py when it is defined.
    """

    name: str
    settings_class: type[SettingsT]
    migrations: Path
    # Its own metrics, made once per runtime on the runtime's registry (`no_service_metrics`).
    service_metrics: Callable[[CollectorRegistry], MetricsT]
    routers: Sequence[APIRouter] = ()
    shared_components: Sequence[str] = ()
    consumers: Callable[[ServiceRuntime[SettingsT, MetricsT]], Sequence[EventConsumer]] = _nothing
    # Long-running loops of the service (schedulers, gauges), started after the relay under the
    # process's supervisor and cancelled at stop. They keep no error policy of their own: an
    # exception ends the loop and the supervisor logs, counts and restarts it.
    background: Callable[[ServiceRuntime[SettingsT, MetricsT]], Sequence[BackgroundTask]] = _nothing
    description: str = ""
    version: str = "0.1.0"
    openapi_tags: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        wrong = component_problems(self.shared_components, service(self.name))
        if wrong:
            raise ValueError(f"service {self.name!r}: " + "; ".join(wrong))

    @property
    def registered(self) -> RegisteredService:
        """Its entry in shared/registry.py."""
        return service(self.name)

    @property
    def publishes(self) -> bool:
        """Whether the service writes events (and so runs an outbox relay)."""
        return self.registered.relay

    def migration_sources(self) -> list[MigrationSource]:
        """Shared building blocks first, then the service's own migrations."""
        return [
            *(shared_source(c) for c in self.shared_components),
            MigrationSource(self.name, self.migrations),
        ]


def component_problems(components: Sequence[str], entry: RegisteredService) -> list[str]:
    """What is wrong with a service's shared components given its registry entry (none: [])."""
    problems = [
        f"no shared component {c!r} in shared/migrations"
        for c in components
        if not (SHARED_MIGRATIONS / c).is_dir()
    ]
    if len(set(components)) != len(components):
        problems.append(f"a shared component is named twice in {list(components)}")
    # The registry says who publishes (the relay reads the outbox) and who consumes (the inbox
    # records what was applied): the outbox exactly when it publishes, the inbox when it consumes.
    if entry.relay != ("outbox" in components):
        said = f"publishes to {entry.publishes}" if entry.relay else "publishes nothing"
        problems.append(f"shared/registry.py says it {said}: the outbox must match")
    if entry.consumes and "inbox" not in components:
        problems.append(
            f"shared/registry.py says it consumes {', '.join(entry.consumes)}: it needs the inbox"
        )
    return problems


class ServiceRuntime(Generic[SettingsT, MetricsT]):
    """Owns a service's connections and background tasks between start() and stop().

    `on_fatal` is called when a background task has been down past its limit (the served
    process then exits non-zero, see main()); in-process runtimes (tests) may leave it out.
    """

    def __init__(
        self,
        definition: ServiceDefinition[SettingsT, MetricsT],
        settings: SettingsT,
        *,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.definition = definition
        self.settings: SettingsT = settings
        self.on_fatal = on_fatal
        self.registry = CollectorRegistry()
        self.metrics = PlatformMetrics(self.registry, TenantLabel(settings.metrics_tenants))
        self.supervision_metrics = SupervisionMetrics(self.registry)
        self.supervisor: Supervisor | None = None
        self.service_metrics: MetricsT = definition.service_metrics(self.registry)
        self.verifier = TokenVerifier.from_file(
            settings.auth_jwks_file,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            reload_seconds=settings.auth_jwks_reload_seconds,
            max_lifetime_seconds=settings.auth_max_token_lifetime_seconds,
        )
        self.revocations = RevocationList()
        self._revocation_metrics = RevocationMetrics(self.registry)
        self.revocation_listener: RevocationListener | None = None
        # Readiness compares against these on every probe; the files are read once, here.
        self._known_migrations = known_versions(definition.migration_sources())
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.broker: KafkaBroker | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []

    @property
    def pool(self) -> asyncpg.Pool:
        """The service's database pool (only between start and stop)."""
        if self._pool is None:
            raise RuntimeError(f"{self.definition.name} is not started")
        return self._pool

    @property
    def producer(self) -> AIOKafkaProducer:
        """The service's idempotent Kafka producer (only between start and stop)."""
        if self._producer is None:
            raise RuntimeError(f"{self.definition.name} is not started")
        return self._producer

    async def start(self) -> None:
        """Connect, migrate, and start consumers and the relay."""
        s = self.settings
        name = self.definition.name
        kafka = kafka_options(s)  # first: a KafkaConfigError names the variables to fix
        self._pool = await create_pool(
            s.database_url.get_secret_value(),
            schema=name,
            application_name=f"itsm-{name}",
            min_size=s.db_pool_min_size,
            max_size=s.db_pool_max_size,
        )
        if s.migrate_on_start:
            async with self._pool.acquire() as conn:
                await migrate(conn, self.definition.migration_sources())
        self._producer = create_producer(s.kafka_bootstrap_servers, s.client_id, security=kafka)
        await self._producer.start()
        supervisor = self.supervisor = Supervisor(
            name, self.supervision_metrics, s.supervision_policy(), on_fatal=self.on_fatal
        )
        # Before the first request: every token revoked so far is known, then followed live.
        self.revocation_listener = RevocationListener(
            self.revocations, kafka, self._revocation_metrics
        )
        await self.revocation_listener.start()
        supervisor.start(BackgroundTask("revocation-listener", self.revocation_listener.follow))
        self.broker = KafkaBroker(
            bootstrap_list(s.kafka_bootstrap_servers),
            client_id=s.client_id,
            security=broker_security(kafka),
            allow_auto_create_topics=False,
            middlewares=[KafkaPrometheusMiddleware(registry=self.registry, app_name=name)],
            logger=logging.getLogger(f"faststream.{name}"),
            log_level=logging.DEBUG,
        )
        self.consumers = list(self.definition.consumers(self))
        for consumer in self.consumers:
            consumer.subscribe(self.broker)
        await self.broker.start()
        if self.definition.publishes and s.outbox_relay == "embedded":
            self.relay = start_relay(name, s, self._pool, self._producer, self.metrics, supervisor)
        if "idempotency" in self.definition.shared_components:
            supervisor.start(BackgroundTask("idempotency-housekeeping", self._housekeeping))
        for task in self.definition.background(self):
            supervisor.start(task)
        log.info("service started", extra={"service": name})

    async def stop(self) -> None:
        """Stop consuming first, then publishing, then close the pool.

        Each step is bounded (STOP_STEP_SECONDS): a step that hangs (a broker that does not
        answer, a connection never released) is logged by name and the shutdown goes on.
        """
        if self.supervisor is not None:
            await self._bounded("background tasks", self.supervisor.stop())
        if self.revocation_listener is not None:
            await self._bounded("revocation listener", self.revocation_listener.stop())
            self.revocation_listener = None
        if self.broker is not None:
            await self._bounded("kafka consumers", self.broker.stop())
            self.broker = None
        if self._producer is not None:
            await self._bounded("kafka producer", self._producer.stop())
            self._producer = None
        if self._pool is not None:
            if not await self._bounded("database pool", self._pool.close()):
                self._pool.terminate()
            self._pool = None

    async def _bounded(self, step: str, awaitable: Awaitable[object]) -> bool:
        return await bounded(self.definition.name, step, awaitable)

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or what is wrong."""
        checks = await database_checks(self.pool, self._known_migrations)
        checks["kafka"] = "ok"
        if self.broker is None or not await self.broker.ping(timeout=2):
            checks["kafka"] = "unreachable"
        # The revocation listener is one of the supervised tasks: down past the grace period,
        # readiness names it here.
        checks["background"] = self.supervisor.readiness() if self.supervisor else "not started"
        return checks

    async def _housekeeping(self) -> None:
        while True:
            purged = await purge_expired(self.pool)
            if purged:
                log.info("purged idempotency keys", extra={"count": purged})
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)


async def bounded(service: str, step: str, awaitable: Awaitable[object]) -> bool:
    """Await one shutdown step for at most STOP_STEP_SECONDS; False if it had to give up."""
    future = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({future}, timeout=STOP_STEP_SECONDS)
    extra = {"service": service, "step": step}
    if not done:
        future.cancel()
        log.warning("shutdown step did not finish in time; going on", extra=extra)
        return False
    if not future.cancelled() and future.exception() is not None:
        log.warning("shutdown step failed", extra=extra, exc_info=future.exception())
    return True


def start_relay(
    name: str,
    settings: ServiceSettings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    metrics: PlatformMetrics,
    supervisor: Supervisor,
    *,
    before: Callable[[], Awaitable[None]] | None = None,
) -> OutboxRelay:
    """The service's outbox relay and its backlog gauge, as two supervised tasks.

    `before` runs at every (re)start of either loop before it reads the outbox (a separate
    relay waits there for the service's migrations).
    """
    relay = OutboxRelay(
        pool=pool,
        producer=producer,
        metrics=metrics,
        schema=name,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval_seconds,
        max_backoff=settings.outbox_max_backoff_seconds,
        metrics_interval=settings.outbox_metrics_interval_seconds,
    )

    def after(loop: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if before is not None:
                await before()
            await loop()

        return run

    supervisor.start(BackgroundTask("outbox-relay", after(relay.run)))
    supervisor.start(BackgroundTask("outbox-backlog", after(relay.report_backlog_forever)))
    return relay


async def database_checks(pool: asyncpg.Pool, known: frozenset[tuple[str, int]]) -> dict[str, str]:
    """Readiness of the database: reachable, and every known migration applied."""
    checks = {"database": "ok", "migrations": "ok"}
    try:
        async with asyncio.timeout(2):
            async with pool.acquire() as conn:
                pending = await pending_migrations(conn, known)
        if pending:
            checks["migrations"] = f"{pending} pending"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    return checks


class RelayRuntime:
    """A service's outbox relay as a process of its own (`python -m services.<name> relay`).

    It reads the service's settings (give it the service's environment) and uses only its
    database role and Kafka user: the service writes the outbox (with OUTBOX_RELAY=separate it
    does not relay it itself), this process publishes it. Several may run: rows are claimed
    with SKIP LOCKED, and a row never overtakes an earlier row of its aggregate. Its HTTP
    server has only /health/live, /health/ready and /metrics (the outbox metrics), on
    OUTBOX_RELAY_HTTP_PORT.
    """

    def __init__(
        self,
        definition: ServiceDefinition[ServiceSettings, object],
        settings: ServiceSettings,
        *,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        if not definition.publishes:
            raise ValueError(f"the {definition.name} service writes no outbox: nothing to relay")
        self.definition = definition
        self.settings = settings
        self.on_fatal = on_fatal
        self.registry = CollectorRegistry()
        self.metrics = PlatformMetrics(self.registry, TenantLabel(settings.metrics_tenants))
        self.supervision_metrics = SupervisionMetrics(self.registry)
        self.supervisor: Supervisor | None = None
        self._known_migrations = known_versions(definition.migration_sources())
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.migrated = False
        self._told_waiting = False

    async def start(self) -> None:
        """Connect to the database and Kafka, then relay until stopped."""
        s = self.settings
        name = self.definition.name
        kafka = kafka_options(s)
        # One connection LISTENs, one carries the batch in flight, one counts the backlog.
        self._pool = await create_pool(
            s.database_url.get_secret_value(),
            schema=name,
            application_name=f"itsm-{name}-relay",
            min_size=1,
            max_size=3,
        )
        self._producer = create_producer(
            s.kafka_bootstrap_servers, f"{s.client_id}-relay", security=kafka
        )
        await self._producer.start()
        self.supervisor = Supervisor(
            f"{name}-relay",
            self.supervision_metrics,
            s.supervision_policy(),
            on_fatal=self.on_fatal,
        )
        self.relay = start_relay(
            name,
            s,
            self._pool,
            self._producer,
            self.metrics,
            self.supervisor,
            before=self._wait_for_migrations,
        )
        log.info("outbox relay started", extra={"service": name})

    async def _wait_for_migrations(self) -> None:
        """Wait (quietly: once at INFO) until the service has applied its migrations.

        A relay may start before its service has migrated the schema (they start side by side);
        publishing before that would fail on a missing table, over and over.
        """
        pool = self._pool
        assert pool is not None
        name = self.definition.name
        while not self.migrated:
            async with pool.acquire() as conn:
                pending = await pending_migrations(conn, self._known_migrations)
            if not pending:
                self.migrated = True
                if self._told_waiting:
                    log.info(
                        "migrations applied; relaying", extra={"service": self.definition.name}
                    )
                return
            if not self._told_waiting:  # once, whichever of the relay's tasks asks first
                log.info(
                    "waiting for the service to apply its migrations before relaying",
                    extra={"service": name, "pending": pending},
                )
                self._told_waiting = True
            await asyncio.sleep(MIGRATION_WAIT_SECONDS)

    async def stop(self) -> None:
        """Stop relaying (a batch in flight is rolled back and published again later)."""
        name = self.definition.name
        if self.supervisor is not None:
            await bounded(name, "outbox relay", self.supervisor.stop())
            self.supervisor = None
        if self._producer is not None:
            await bounded(name, "kafka producer", self._producer.stop())
            self._producer = None
        if self._pool is not None:
            if not await bounded(name, "database pool", self._pool.close()):
                self._pool.terminate()
            self._pool = None

    async def readiness(self) -> dict[str, str]:
        """Database and migrations as the service's, Kafka reachable, the relay running."""
        if self._pool is None or self._producer is None:
            return {"database": "not started", "migrations": "unknown", "kafka": "not started"}
        checks = await database_checks(self._pool, self._known_migrations)
        try:
            async with asyncio.timeout(2):
                await self._producer.client.fetch_all_metadata()
            checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = f"unreachable: {type(exc).__name__}"
        if self.supervisor is None:
            checks["relay"] = "stopped"
        elif not self.migrated:
            checks["relay"] = "waiting for migrations"
        else:
            checks["relay"] = self.supervisor.readiness()
        return checks


async def runtime_of(request: Request) -> ServiceRuntime:
    """The runtime serving a request (a FastAPI dependency; async, so that FastAPI does not
    hand every request to a worker thread just to read an attribute)."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def build_relay_app(
    definition: ServiceDefinition[ServiceSettings, object],
    settings: ServiceSettings,
    *,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """The ASGI app of a separate outbox relay process: health and metrics around the relay."""
    return create_app(
        RelayRuntime(definition, settings, on_fatal=on_fatal),
        (),
        title=f"ITSM {definition.name} outbox relay",
        version=definition.version,
    )


def build_app(
    definition: ServiceDefinition[SettingsT, MetricsT],
    settings: SettingsT | None = None,
    *,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """The service's ASGI app with a runtime for the given (or environment) settings."""
    runtime = ServiceRuntime(definition, settings or definition.settings_class(), on_fatal=on_fatal)
    return create_app(
        runtime,
        definition.routers,
        asyncapi=lambda: service_document(definition.name, version=definition.version),
        title=f"ITSM {definition.name} service",
        description=definition.description,
        version=definition.version,
    )


async def migrate_only(
    definition: ServiceDefinition[ServiceSettings, object], settings: ServiceSettings
) -> list[str]:
    """Apply the service's migrations and return the names applied."""
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(), server_settings={"search_path": definition.name}
    )
    try:
        return await migrate(conn, definition.migration_sources())
    finally:
        await conn.close()


def main(
    definition: ServiceDefinition[ServiceSettings, object], argv: Sequence[str] | None = None
) -> None:
    """Command line of a service: `serve` (default), `migrate`, or `relay` (its outbox relay as
    a process of its own, beside services started with OUTBOX_RELAY=separate)."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{definition.name}")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", "relay"]
    )
    args = parser.parse_args(argv)
    settings = definition.settings_class()
    configure_logging(definition.name, settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(migrate_only(definition, settings))
        log.info("migrations applied", extra={"applied": applied})
        return
    fatal: list[str] = []

    def give_up(reason: str) -> None:
        # Stop as on SIGTERM (gracefully), but exit with a status that says why.
        fatal.append(reason)
        server.should_exit = True

    if args.command == "relay":
        if not definition.publishes:
            parser.error(f"the {definition.name} service writes no outbox: nothing to relay")
        app = build_relay_app(definition, settings, on_fatal=give_up)
        port = settings.relay_http_port
    else:
        app, port = build_app(definition, settings, on_fatal=give_up), settings.http_port
    server = uvicorn.Server(server_config(app, settings, port))
    server.run()
    if fatal:
        sys.exit(EXIT_GAVE_UP)
