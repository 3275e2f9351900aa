"""The whole platform on one machine: Kafka, PostgreSQL, provisioning, topics and the services."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.auth.local import DEFAULT_AUDIENCE, DEFAULT_ISSUER, LocalKeys
from shared.auth.tokens import new_signing_key, save_private_key
from shared.devstack.kafka import REPO_ROOT, SCRAM_MECHANISM, LocalKafka
from shared.devstack.kafka_cluster import LocalKafkaCluster
from shared.devstack.postgres import LocalPostgres
from shared.devstack.supervisor import Part, Supervisor, stop_process
from shared.kafka import ensure_topics, security_options
from shared.kafka_acl import ADMIN_USER, apply_acls
from shared.provision import DEFAULT_DATABASE, dsn_for, provision
from shared.registry import DEFAULT_HTTP_PORTS, SERVICE_NAMES
from shared.settings import RELAY_PORT_OFFSET

# With kafka_acls, the broker's own login and only super user (it applies the ACLs).
BROKER_USER = "itsm-broker"


@dataclass
class Infra:
    """Where Kafka and PostgreSQL are, and each service's own database credentials."""

    bootstrap_servers: str
    admin_dsn: str
    service_dsns: dict[str, str]
    keys: LocalKeys
    # Each service's SCRAM (user, password) when the broker requires SASL; empty for PLAINTEXT.
    kafka_users: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    # The reporting ledger's own checkpoint signing key (PEM), not the access-token key.
    ledger_key_file: Path | None = None

    def service_env(
        self, service: str, http_port: int, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment variables that configure one service process."""
        prefix = service.upper()
        kafka_auth: dict[str, str] = {}
        if service in self.kafka_users:
            user, password = self.kafka_users[service]
            kafka_auth = {
                f"{prefix}_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                f"{prefix}_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
                f"{prefix}_KAFKA_SASL_USERNAME": user,
                f"{prefix}_KAFKA_SASL_PASSWORD": password,
            }
        return {
            f"{prefix}_DATABASE_URL": self.service_dsns[service],
            f"{prefix}_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            **kafka_auth,
            f"{prefix}_HTTP_PORT": str(http_port),
            f"{prefix}_AUTH_JWKS_FILE": str(self.keys.jwks_file),
            f"{prefix}_AUTH_ISSUER": DEFAULT_ISSUER,
            f"{prefix}_AUTH_AUDIENCE": DEFAULT_AUDIENCE,
            **(
                {f"{prefix}_LEDGER_SIGNING_KEY_FILE": str(self.ledger_key_file)}
                if service == "reporting" and self.ledger_key_file is not None
                else {}
            ),
            **dict(extra or {}),
        }


@dataclass
class ServiceProcess:
    """A service started as its own OS process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the service's HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after the timeout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()


@dataclass(frozen=True)
class SupervisedService:
    """Where a supervised service or relay listens and logs (its process comes and goes)."""

    name: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL of its HTTP API (health and metrics only for a relay)."""
        return f"http://127.0.0.1:{self.port}"


class LocalPlatform:
    """Starts what is not configured from outside: KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL win.

    With kafka_scram, the broker it starts requires SASL/SCRAM-SHA-512: a user `itsm-admin`
    (topics) and one `itsm-<service>` per service, handed to each service by service_env().

    With kafka_acls (implying kafka_scram), the broker also runs KRaft's StandardAuthorizer and
    refuses what no ACL allows: its own login is a further user, `itsm-broker`, the only super
    user, which applies the ACLs of shared.kafka_acl before `itsm-admin` creates the topics.

    With kafka_brokers=3 (or more) it starts a LocalKafkaCluster instead of one broker, its
    nodes on `kafka_node_ports` (client, controller) or else on kafka_port + 2i and + 2i + 1,
    and creates the platform's topics replicated to every node (without ACLs: the authorizer
    test runs on one broker).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        kafka_port: int = 19092,
        kafka_controller_port: int = 19093,
        postgres_port: int = 55432,
        environ: Mapping[str, str] | None = None,
        kafka_scram: bool = False,
        kafka_acls: bool = False,
        kafka_brokers: int = 1,
        kafka_node_ports: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if kafka_acls and kafka_brokers > 1:
            raise ValueError("kafka_acls runs on one broker; a cluster runs without an authorizer")
        self.state_dir = state_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.kafka: LocalKafka | LocalKafkaCluster | None = None
        self.postgres: LocalPostgres | None = None
        if self.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            pass  # a Kafka named from outside
        elif kafka_brokers > 1:
            self.kafka = LocalKafkaCluster(
                self.state_dir / "kafka-cluster",
                kafka_node_ports,
                port=kafka_port,
                nodes=kafka_brokers,
                scram_users=self._kafka_users() if kafka_scram else None,
            )
        else:
            self.kafka = LocalKafka(
                self.state_dir / "kafka",
                port=kafka_port,
                controller_port=kafka_controller_port,
                # The first user is the broker's own inter-broker login: the admin, or with ACLs
                # a super user of its own (the admin may only create topics).
                scram_users=self._kafka_users(kafka_acls) if kafka_scram or kafka_acls else None,
                acls=kafka_acls,
            )
        if not self.environ.get("DATABASE_URL"):
            self.postgres = LocalPostgres(self.state_dir / "postgres", port=postgres_port)
        self.services: list[ServiceProcess] = []

    def _passwords(self) -> dict[str, str]:
        """Each service role's password, made once and kept in the state directory."""
        path = self.state_dir / "service-passwords.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        for service in SERVICE_NAMES:
            stored.setdefault(service, secrets.token_urlsafe(18))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return stored

    def _kafka_users(self, acls: bool = False) -> dict[str, str]:
        """SCRAM users and passwords, kept with the broker's state (it is formatted with them);
        with `acls`, the broker's own `itsm-broker` comes first."""
        path = self.state_dir / "kafka-users.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        users = (ADMIN_USER, *(f"itsm-{service}" for service in SERVICE_NAMES))
        if acls:
            users = (BROKER_USER, *users)
        for user in users:
            stored.setdefault(user, secrets.token_urlsafe(18))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return {user: stored[user] for user in users}

    def start_infra(self) -> Infra:
        """Start Kafka and PostgreSQL as needed, provision roles and schemas, create topics."""
        if self.postgres is not None:
            self.postgres.start()
        if self.kafka is not None:
            self.kafka.start()
        return self.prepare_infra()

    def prepare_infra(self) -> Infra:
        """Provision roles and schemas and create topics on running Kafka and PostgreSQL."""
        if self.postgres is not None:
            admin_dsn = self.postgres.admin_dsn
        else:
            admin_dsn = self.environ["DATABASE_URL"]
        kafka_users: dict[str, tuple[str, str]] = {}
        admin_security = None
        acl_security = None
        if self.kafka is not None:
            bootstrap = self.kafka.bootstrap_servers
            users = self.kafka.scram_users
            if users:
                kafka_users = {s: (f"itsm-{s}", users[f"itsm-{s}"]) for s in SERVICE_NAMES}
                admin_security = security_options(
                    self.kafka.security_protocol,
                    username=ADMIN_USER,
                    password=users[ADMIN_USER],
                )
                if isinstance(self.kafka, LocalKafka) and self.kafka.acls:
                    acl_security = security_options(
                        self.kafka.security_protocol,
                        username=BROKER_USER,
                        password=users[BROKER_USER],
                    )
        else:
            bootstrap = self.environ["KAFKA_BOOTSTRAP_SERVERS"]
        keys = LocalKeys(self.state_dir / "auth")
        keys.issuer()  # makes the signing key and the JWKS on first use
        ledger_key_file = ensure_ledger_key(self.state_dir / "ledger" / "signing-key.pem")
        passwords = self._passwords()
        asyncio.run(provision(admin_dsn, passwords))
        if acl_security is not None:
            # Before the topics: the admin may create them only once its ACL exists.
            asyncio.run(apply_acls(bootstrap, security=acl_security))
        replication = (
            self.kafka.replication_factor if isinstance(self.kafka, LocalKafkaCluster) else 1
        )
        asyncio.run(
            ensure_topics(bootstrap, replication_factor=replication, security=admin_security)
        )
        return Infra(
            bootstrap_servers=bootstrap,
            admin_dsn=admin_dsn,
            keys=keys,
            kafka_users=kafka_users,
            ledger_key_file=ledger_key_file,
            service_dsns={
                s: dsn_for(admin_dsn, user=s, password=passwords[s], database=DEFAULT_DATABASE)
                for s in SERVICE_NAMES
            },
        )

    def start_services(
        self,
        infra: Infra,
        ports: Mapping[str, int] | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        replicas: int = 1,
        separate_relays: Collection[str] = (),
    ) -> list[ServiceProcess]:
        """Start each service as `python -m services.<name>` and wait until it is ready.

        With `replicas` > 1, each service runs that many processes, as a deployment scales it
        out: replica r listens on its port + r and logs to `<name>-<r + 1>.log` (the first one
        keeps `<name>.log`); they share the database and the consumer groups.

        The services named in `separate_relays` run with OUTBOX_RELAY=separate, and their outbox
        relay as one more process (`python -m services.<name> relay`, named `<name>-relay`,
        health and metrics on the service's port + RELAY_PORT_OFFSET), as the deployments run
        them."""
        ports = dict(DEFAULT_HTTP_PORTS if ports is None else ports)
        started = []
        for name, first_port in ports.items():
            extra = _process_env(name, extra_env, separate=name in separate_relays)
            for replica in range(replicas):
                port = first_port + replica
                suffix = "" if replica == 0 else f"-{replica + 1}"
                env = infra.service_env(name, port, extra)
                started.append(self._launch(name, f"{name}{suffix}", port, env))
            if name in separate_relays:
                started.append(self._launch_relay(infra, name, first_port, extra))
        self.services.extend(started)
        for service in started:
            wait_ready(service, timeout)
        return started

    def start_relay(
        self,
        infra: Infra,
        name: str,
        service_port: int,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> ServiceProcess:
        """Start one more outbox relay process of a service started with separate relays."""
        extra = _process_env(name, extra_env, separate=True)
        relay = self._launch_relay(infra, name, service_port, extra)
        self.services.append(relay)
        wait_ready(relay, timeout)
        return relay

    def _launch_relay(
        self, infra: Infra, name: str, service_port: int, extra: Mapping[str, str]
    ) -> ServiceProcess:
        # The service's environment: its HTTP_PORT gives the relay's default port.
        env = infra.service_env(name, service_port, extra)
        relay_port = service_port + RELAY_PORT_OFFSET
        return self._launch(name, f"{name}-relay", relay_port, env, "relay")

    def supervise(
        self,
        supervisor: Supervisor,
        ports: Mapping[str, int] | None = None,
        *,
        separate_relays: Collection[str] = (),
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
        replicas: int = 1,
        relays: int = 1,
    ) -> tuple[Infra, list[SupervisedService]]:
        """Start PostgreSQL, Kafka, the services and their separate relays as parts of the
        supervisor (which restarts any that dies); return once every part is ready.

        Each service and relay is started as start_services() does, in a session of its own
        so that a terminal's Ctrl-C reaches only the supervisor, which stops them in order.
        A cluster's nodes are parts of their own, `kafka-1`, `kafka-2`, ...

        With `replicas` > 1 each service runs that many processes, each a part: replica r
        (from 0) on its port + r, named `<name>` then `<name>-2`, ...; they share the database
        and the consumer groups. With `relays` > 1 each service in `separate_relays` runs that
        many relays: relay j on its port + RELAY_PORT_OFFSET + j, named `<name>-relay` then
        `<name>-relay-2`, ... The ports map must leave those ports free.
        """
        infra_parts = []
        if self.postgres is not None:
            supervisor.add(self._postgres_part(self.postgres))
            infra_parts.append("postgres")
        if isinstance(self.kafka, LocalKafkaCluster):
            self.kafka.prepare()
            for node in self.kafka.nodes:
                # Added at once: each part's thread starts its node, and no node is ready
                # before a majority of them runs.
                # The supervisor stops them one after another: the last one, alone, waits for
                # a quorum that is gone, so its clean shutdown is not waited for long.
                supervisor.add(self._kafka_part(node, self.kafka.node_name(node), 10.0))
                infra_parts.append(self.kafka.node_name(node))
        elif self.kafka is not None:
            supervisor.add(self._kafka_part(self.kafka))
            infra_parts.append("kafka")
        supervisor.wait_running(infra_parts, timeout)
        infra = self.prepare_infra()
        ports = dict(DEFAULT_HTTP_PORTS if ports is None else ports)
        services = []
        for name, port in ports.items():
            extra = _process_env(name, extra_env, separate=name in separate_relays)
            for replica in range(replicas):
                label = name if replica == 0 else f"{name}-{replica + 1}"
                env = infra.service_env(name, port + replica, extra)
                services.append(self._service_part(supervisor, name, label, port + replica, env))
            if name in separate_relays:
                env = infra.service_env(name, port, extra)
                for relay in range(relays):
                    label = f"{name}-relay" if relay == 0 else f"{name}-relay-{relay + 1}"
                    relay_port = port + RELAY_PORT_OFFSET + relay
                    relay_env = {**env, f"{name.upper()}_OUTBOX_RELAY_HTTP_PORT": str(relay_port)}
                    services.append(
                        self._service_part(supervisor, name, label, relay_port, relay_env, "relay")
                    )
        supervisor.wait_running([s.name for s in services], timeout)
        return infra, services

    def _postgres_part(self, postgres: LocalPostgres) -> Part:
        # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
        return Part(
            "postgres",
            start=postgres.spawn,
            stop=lambda process: stop_process(process, 60.0, signal.SIGINT),
        )

    def _kafka_part(
        self, kafka: LocalKafka, name: str = "kafka", stop_timeout: float = 30.0
    ) -> Part:
        def start() -> subprocess.Popen[bytes]:
            kafka.start()
            if kafka.process is None:
                raise RuntimeError("the broker did not start")
            return kafka.process

        return Part(name, start=start, stop=lambda _process: kafka.stop(stop_timeout))

    def _service_part(
        self,
        supervisor: Supervisor,
        name: str,
        label: str,
        port: int,
        env: Mapping[str, str],
        *command: str,
    ) -> SupervisedService:
        current: list[ServiceProcess] = []

        def start() -> subprocess.Popen[bytes]:
            for previous in current:
                previous.stop()  # closes the dead one's log handle
            current.clear()
            service = self._launch(name, label, port, env, *command, own_session=True)
            current.append(service)
            try:
                wait_ready(service, 60.0)
            except BaseException:
                service.stop(timeout=5.0)
                raise
            return service.process

        def stop(_process: subprocess.Popen[bytes]) -> None:
            for service in current:
                service.stop()

        supervisor.add(Part(label, start=start, stop=stop))
        return SupervisedService(label, port, self.state_dir / "logs" / f"{label}.log")

    def _launch(
        self,
        name: str,
        label: str,
        port: int,
        env: Mapping[str, str],
        *command: str,
        own_session: bool = False,
    ) -> ServiceProcess:
        """`python -m services.<name> [command]` with the environment, logging to <label>.log."""
        log_dir = self.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        base_env = {k: v for k, v in self.environ.items() if not k.endswith("_DATABASE_URL")}
        base_env["PYTHONPATH"] = str(REPO_ROOT)
        log_path = log_dir / f"{label}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", f"services.{name}", *command],
            cwd=REPO_ROOT,
            env={**base_env, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
        return ServiceProcess(label, port, process, log_path, log_file)

    def stop(self) -> None:
        """Stop the services, then Kafka and PostgreSQL if this platform started them."""
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.kafka is not None:
            self.kafka.stop()
        if self.postgres is not None:
            self.postgres.stop()


def ensure_ledger_key(path: Path) -> Path:
    """The ledger's checkpoint signing key for local runs (PKCS#8 PEM, mode 600), made once."""
    if not path.exists():
        save_private_key(new_signing_key(), path)
    return path


def _process_env(
    name: str, extra_env: Mapping[str, str] | None, *, separate: bool
) -> dict[str, str]:
    """The extra environment of a service's processes; `separate`: its relay runs apart."""
    extra = dict(extra_env or {})
    if separate:
        extra[f"{name.upper()}_OUTBOX_RELAY"] = "separate"
    return extra


def wait_ready(service: ServiceProcess, timeout: float) -> None:
    """Poll /health/ready until 200; fail with the log's tail if the process dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{_tail(service.log_path)}")
        try:
            with urllib.request.urlopen(f"{service.url}/health/ready", timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{service.name} was not ready after {timeout}s:\n{_tail(service.log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
