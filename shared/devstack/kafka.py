"""A real Apache Kafka 4.x broker for local runs and tests, from Maven-resolved jars, no Docker.

The jars come from `deploy/kafka/pom.xml` (resolved once into `.state/kafka-libs`); the broker
runs as `java -cp '<libs>/*' kafka.Kafka server.properties` in KRaft combined mode (one node that
is both broker and controller), listening on 127.0.0.1 only.

    python -m shared.devstack.kafka fetch-jars
    python -m shared.devstack.kafka run [--port 19092]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from aiokafka.admin import AIOKafkaAdminClient

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY_DIR: Path = REPO_ROOT / "deploy" / "kafka"
POM_FILE: Path = KAFKA_DEPLOY_DIR / "pom.xml"
LOG4J2_CONFIG: Path = KAFKA_DEPLOY_DIR / "log4j2.yaml"
DEFAULT_LIBS_DIR: Path = REPO_ROOT / ".state" / "kafka-libs"
DEFAULT_STATE_DIR: Path = REPO_ROOT / ".state" / "kafka"
SCRAM_MECHANISM = "SCRAM-SHA-512"

_MARKER_NAME = ".resolved"
_MAVEN_TIMEOUT_S = 1800.0
# The StorageTool splits `--add-scram` values on commas and brackets without honouring quotes,
# and the inter-broker JAAS line quotes the password, so these characters cannot round-trip.
_SCRAM_VALUE_RE = re.compile(r'[^\s,\[\]"\\;=]+')


# --------------------------------------------------------------------------- jars


def _pom_fingerprint() -> str:
    return "sha256=" + hashlib.sha256(POM_FILE.read_bytes()).hexdigest()


def _jars_complete(libs_dir: Path, fingerprint: str) -> bool:
    marker = libs_dir / _MARKER_NAME
    if not marker.is_file() or marker.read_text().strip() != fingerprint:
        return False
    # The marker is written last, but a hand-pruned directory should still re-resolve.
    return any(libs_dir.glob("kafka_2.13-*.jar")) and any(libs_dir.glob("kafka-clients-*.jar"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Serialises resolution between processes (parallel test workers, a `run` in another shell).
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars(libs_dir: Path | None = None) -> Path:
    """Resolve Kafka's jars with Maven into libs_dir (default REPO_ROOT/.state/kafka-libs)."""
    libs = (libs_dir or DEFAULT_LIBS_DIR).resolve()
    if not POM_FILE.is_file():
        raise RuntimeError(f"{POM_FILE} not found: the devstack needs a source checkout")
    fingerprint = _pom_fingerprint()
    if _jars_complete(libs, fingerprint):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs.parent / f".{libs.name}.lock"):
        if _jars_complete(libs, fingerprint):  # another process resolved them while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (`mvn`) is not on PATH (Debian: apt-get install maven)")
        # Resolve into a staging directory and swap it in whole, so a pom change never leaves
        # jars of two Kafka versions side by side on the broker's classpath.
        staging = libs.parent / f".{libs.name}.staging"
        old = libs.parent / f".{libs.name}.old"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM_FILE),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd, capture_output=True, text=True, check=False, timeout=_MAVEN_TIMEOUT_S
        )
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (result.stdout + result.stderr).strip()
            raise RuntimeError(
                f"resolving Kafka's jars failed (exit {result.returncode}): {' '.join(cmd)}\n"
                + _tail_text(output, 40)
            )
        (staging / _MARKER_NAME).write_text(fingerprint + "\n")
        shutil.rmtree(old, ignore_errors=True)
        if libs.exists():
            libs.rename(old)
        staging.rename(libs)
        shutil.rmtree(old, ignore_errors=True)
    return libs


# --------------------------------------------------------------------------- helpers


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("`java` (17 or newer) is not on PATH and JAVA_HOME is not set")
    return java


def _new_cluster_id() -> str:
    # Same shape as `kafka-storage random-uuid`: 16 random bytes, url-safe base64, no padding;
    # like Kafka's Uuid.randomUuid, never one that starts with "-" (it would parse as an option).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def new_cluster_id() -> str:
    """A fresh KRaft cluster id, as `kafka-storage random-uuid` makes (for formatting nodes)."""
    return _new_cluster_id()


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))  # the tail only: server.log can be 20 MB
            return _tail_text(handle.read().decode("utf-8", "replace"), lines)
    except FileNotFoundError:
        return "(no file)"


def _port_accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    # An empty cmdline means the process has released its memory: it is exiting or a zombie
    # (which, in a container, nobody may ever reap). /proc/<pid>/stat is no help: it shows the
    # leader thread, which the JVM can leave as "Z" while its other threads are still running.
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def _escape_property(value: str) -> str:
    # java.util.Properties treats backslash as an escape and a newline as the end of the value.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, str | None]], timeout: float) -> str:
    """Run a coroutine on a private event loop in a helper thread; return its error or ""."""
    # A thread with its own loop makes the readiness probe safe to call from anywhere, including
    # synchronous code running inside another event loop's thread (asyncio.run would refuse).
    outcome: list[str | None] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(factory()))
        except Exception as exc:  # reported to the caller, which retries until its deadline
            outcome.append(repr(exc))

    thread = threading.Thread(target=target, name="kafka-readiness-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return "probe did not finish in time"
    return outcome[0] or ""


_LIVE: set[LocalKafka] = set()


def _stop_live_brokers() -> None:
    # Leaves no orphaned JVM behind when a test session or script ends without calling stop().
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=15.0)


atexit.register(_stop_live_brokers)


# --------------------------------------------------------------------------- broker


class LocalKafka:
    """One single-node KRaft Kafka (broker and controller) in a state directory, on 127.0.0.1."""

    def __init__(
        self,
        state_dir: Path,
        port: int = 19092,
        controller_port: int = 19093,
        scram_users: dict[str, str] | None = None,
        heap_mb: int = 512,
        partitions_default: int = 6,
        extra_properties: Mapping[str, str] | None = None,
        acls: bool = False,
        *,
        node_id: int = 1,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
    ) -> None:
        """`extra_properties` are written into server.properties last, over the defaults (an
        authorizer, say).

        With `acls` (which needs `scram_users`), the broker runs KRaft's StandardAuthorizer and
        allows nothing that no ACL allows; the first SCRAM user, the broker's own login, is the
        only super user (see _authorizer_properties).

        One node of a cluster (shared/devstack/kafka_cluster.py) names its `node_id`, the
        cluster's `quorum_voters` ("1@127.0.0.1:port,2@..."), the `cluster_id` every node is
        formatted with, and the replication of new topics and of Kafka's internal ones."""
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        if scram_users is not None:
            if not scram_users:
                raise ValueError("scram_users must name at least one user (or be None)")
            for name, password in scram_users.items():
                if not _SCRAM_VALUE_RE.fullmatch(name) or not _SCRAM_VALUE_RE.fullmatch(password):
                    raise ValueError(
                        f"SCRAM user {name!r}: names and passwords must be non-empty and free of "
                        'whitespace and , [ ] " \\ ; ='
                    )
        if acls and scram_users is None:
            raise ValueError("acls needs scram_users: ACLs name SCRAM users")
        self.acls = acls
        self.state_dir = state_dir.resolve()
        self.port = port
        self.controller_port = controller_port
        self.scram_users = dict(scram_users) if scram_users is not None else None
        self.heap_mb = heap_mb
        self.partitions_default = partitions_default
        self.extra_properties = dict(extra_properties or {})
        self.node_id = node_id
        self.quorum_voters = quorum_voters or f"{node_id}@127.0.0.1:{controller_port}"
        self.cluster_id = cluster_id
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.data_dir = self.state_dir / "data"
        self.logs_dir = self.state_dir / "logs"
        self.properties_file = self.state_dir / "server.properties"
        self.server_log = self.logs_dir / "server.log"
        self.console_log = self.state_dir / "broker.out"
        self._pid_file = self.state_dir / "broker.pid"
        self._format_fingerprint_file = self.state_dir / "storage-format.sha256"
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- client-facing settings

    @property
    def bootstrap_servers(self) -> str:
        """The client listener, "127.0.0.1:<port>"."""
        return f"127.0.0.1:{self.port}"

    @property
    def security_protocol(self) -> str:
        """The client listener's protocol: SASL_PLAINTEXT with SCRAM users, else PLAINTEXT."""
        return "PLAINTEXT" if self.scram_users is None else "SASL_PLAINTEXT"

    @property
    def sasl_mechanism(self) -> str | None:
        """SCRAM-SHA-512 when SCRAM users are configured, else None."""
        return None if self.scram_users is None else SCRAM_MECHANISM

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first SCRAM user's (name, password), or None without SASL."""
        if self.scram_users is None:
            return None
        return next(iter(self.scram_users.items()))

    def client_options(self) -> dict[str, str]:
        """Keyword arguments for aiokafka clients (producer, consumer, admin) as the first user."""
        options = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        credentials = self.credentials
        if credentials is not None:
            options["sasl_mechanism"] = SCRAM_MECHANISM
            options["sasl_plain_username"] = credentials[0]
            options["sasl_plain_password"] = credentials[1]
        return options

    # ---- lifecycle

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The broker process this object started last (None before start and after stop)."""
        return self._proc

    def is_running(self) -> bool:
        """Whether the broker process this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        """Format storage on first start, write server.properties, start, wait for metadata."""
        # The timeout covers formatting and broker start-up; a first-time jar resolution by Maven
        # comes before it and has its own (long) limit.
        if self.is_running():
            return
        libs = ensure_kafka_jars()
        if not LOG4J2_CONFIG.is_file():
            raise RuntimeError(f"{LOG4J2_CONFIG} not found: the devstack needs a source checkout")
        java = _find_java()
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._stop_recorded_broker(30.0, signal.SIGTERM)
        for port in (self.port, self.controller_port):
            if _port_accepts_connections(port):
                raise RuntimeError(
                    f"port {port} on 127.0.0.1 is already in use by another process; "
                    "pick free ports for LocalKafka"
                )
        self._write_properties()
        self._format_storage_once(java, libs, deadline)

        with self.console_log.open("ab") as console:
            console.write(f"--- starting broker {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            console.flush()
            props_arg = str(self.properties_file)
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [*self._java_command(java, libs, self.heap_mb), "kafka.Kafka", props_arg],
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches only us, and we stop the broker
                # cleanly instead of the JVM racing its own shutdown hook.
                start_new_session=True,
            )
        self._pid_file.write_text(f"{self._proc.pid}\n")
        _LIVE.add(self)
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait for a clean shutdown, SIGKILL after timeout."""
        proc = self._proc
        if proc is None:
            # Not started by this object: stop the broker an earlier process left running here.
            self._stop_recorded_broker(timeout, signal.SIGTERM)
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL the broker at once (an unclean stop, for fault tests)."""
        proc = self._proc
        if proc is None:
            self._stop_recorded_broker(0.0, signal.SIGKILL)
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._forget_process()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- internals

    def _forget_process(self) -> None:
        self._proc = None
        _LIVE.discard(self)
        self._pid_file.unlink(missing_ok=True)

    def _java_command(self, java: str, libs: Path, heap_mb: int) -> list[str]:
        return [
            java,
            f"-Xms{heap_mb}m",
            f"-Xmx{heap_mb}m",
            # The GC settings Kafka's own kafka-run-class.sh uses.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{libs}/*",
        ]

    def _recorded_pid(self) -> int | None:
        # The pid file's process counts as our broker only if its command line names our
        # server.properties: after a reboot the pid may belong to anything.
        try:
            pid = int(self._pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if b"kafka.Kafka" in cmdline and str(self.properties_file).encode() in cmdline:
            return pid
        return None

    def _stop_recorded_broker(self, timeout: float, first_signal: signal.Signals) -> None:
        # A broker left running by a process that died without stop() holds the ports and the
        # log directory lock, so it must go before a new one starts here.
        pid = self._recorded_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, first_signal)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                # Not our child, so it cannot be waited for: poll until the kernel drops it.
                for _ in range(50):
                    if not _pid_alive(pid):
                        break
                    time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)

    def _write_properties(self) -> None:
        listener = self.security_protocol  # the listener is named after its protocol
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            # Static voters rather than `controller.quorum.bootstrap.servers` + `--standalone`:
            # the voter's endpoint is then read from this file on every start instead of being
            # recorded in the metadata log at format time, so a state dir can be restarted on
            # other ports.
            "controller.quorum.voters": self.quorum_voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"{listener}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"{listener}://127.0.0.1:{self.port}",
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
            "inter.broker.listener.name": listener,
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.partitions_default),
            "default.replication.factor": str(self.replication_factor),
            "auto.create.topics.enable": "false",
            # A single node cannot hold more than one replica of the internal topics; a cluster
            # replicates them as it does the platform's topics.
            "offsets.topic.replication.factor": str(self.replication_factor),
            "transaction.state.log.replication.factor": str(self.replication_factor),
            "transaction.state.log.min.isr": str(self.min_insync_replicas),
            "share.coordinator.state.topic.replication.factor": str(self.replication_factor),
            "share.coordinator.state.topic.min.isr": str(self.min_insync_replicas),
            "min.insync.replicas": str(self.min_insync_replicas),
            # Kafka's default, said out loud: a replica that was not in sync never becomes
            # leader, so an acknowledged (acks=all) record is never lost to an election.
            "unclean.leader.election.enable": "false",
            # Tests start consumer groups constantly; the 3 s default only slows each one down.
            "group.initial.rebalance.delay.ms": "0",
            "num.recovery.threads.per.data.dir": "1",
            # After a SIGKILL the controller refuses the restarted broker's registration until
            # the dead incarnation's session expires (9 s by default); fault tests kill often.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
        }
        credentials = self.credentials
        if credentials is not None:
            name, password = credentials
            # Inter-broker traffic (a single node still has some) authenticates as the first
            # user over the same SASL listener; the controller listener stays PLAINTEXT.
            props["sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            props["sasl.mechanism.inter.broker.protocol"] = SCRAM_MECHANISM
            mechanism = SCRAM_MECHANISM.lower()
            props[f"listener.name.{listener.lower()}.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{name}" password="{password}";'
            )
        props.update(self._authorizer_properties())
        props.update(self.extra_properties)
        text = "".join(f"{key}={_escape_property(value)}\n" for key, value in props.items())
        self.properties_file.write_text(
            "# Written by shared/devstack/kafka.py on every start; edits are overwritten.\n" + text
        )
        # It may hold a SCRAM password.
        self.properties_file.chmod(0o600)

    def _authorizer_properties(self) -> dict[str, str]:
        """KRaft's StandardAuthorizer, denying what no ACL allows, when `acls` is on.

        Every request the node makes to itself must come from a super user: the raft Vote and
        Fetch, the broker's registration and heartbeats (ClusterAction) and the Envelope of
        each forwarded admin request arrive on the controller listener, and the inter-broker
        requests on the client listener. A PLAINTEXT controller listener would make that
        principal `User:ANONYMOUS`, a super user anyone reaching the port could be; SCRAM
        cannot serve there (its credentials live in the metadata the controller serves), so the
        controller listener authenticates the node with SASL PLAIN as the broker's SCRAM user,
        with the same password, from this file only. That one user is `super.users`.
        """
        credentials = self.credentials
        if not self.acls or credentials is None:
            return {}
        name, password = credentials
        return {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{name}",
            "listener.security.protocol.map": (
                f"CONTROLLER:SASL_PLAINTEXT,{self.security_protocol}:{self.security_protocol}"
            ),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{name}" password="{password}" user_{name}="{password}";'
            ),
        }

    def _format_fingerprint(self) -> str:
        users = json.dumps(self.scram_users, sort_keys=True)
        return hashlib.sha256(users.encode()).hexdigest()

    def _format_storage_once(self, java: str, libs: Path, deadline: float) -> None:
        fingerprint = self._format_fingerprint()
        if (self.data_dir / "meta.properties").is_file():
            recorded = (
                self._format_fingerprint_file.read_text().strip()
                if self._format_fingerprint_file.is_file()
                else fingerprint
            )
            if recorded != fingerprint:
                # SCRAM credentials are only written when storage is formatted.
                raise RuntimeError(
                    f"{self.data_dir} was formatted with other SCRAM users; delete "
                    f"{self.state_dir} to start afresh with the new ones"
                )
            return
        # No meta.properties: never formatted, or formatting died half-way; either way nothing
        # in the directory is usable and the formatter refuses a partly written one.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        cmd = [
            *self._java_command(java, libs, 256),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id or _new_cluster_id(),
            "-c",
            str(self.properties_file),
        ]
        for name, password in (self.scram_users or {}).items():
            cmd += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                cmd,
                capture_output=True,
                text=True,
                check=False,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError("formatting Kafka storage timed out") from exc
        if result.returncode != 0 or not (self.data_dir / "meta.properties").is_file():
            raise RuntimeError(
                f"formatting Kafka storage failed (exit {result.returncode}):\n"
                + _tail_text((result.stdout + result.stderr).strip(), 40)
            )
        self._format_fingerprint_file.write_text(fingerprint + "\n")

    async def _probe(self, limit_s: float) -> str | None:
        # A metadata request that lists this broker proves it accepts and serves clients
        # (and, with SCRAM, that the first user authenticates).
        admin = AIOKafkaAdminClient(
            **self.client_options(),
            client_id="itsm-devstack-probe",
            request_timeout_ms=int(limit_s * 1000),
        )
        try:
            await asyncio.wait_for(admin.start(), limit_s)
            cluster = await asyncio.wait_for(admin.describe_cluster(), limit_s)
            if not cluster.get("brokers"):
                return "metadata lists no brokers yet"
            # In a cluster, the metadata may come from a peer: this node counts once it is
            # registered and unfenced (a fenced broker is left out of the metadata).
            if self.node_id not in {broker["node_id"] for broker in cluster["brokers"]}:
                return f"node {self.node_id} is not among the cluster's live brokers yet"
            return None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def _startup_failure(self, reason: str) -> RuntimeError:
        return RuntimeError(
            f"Kafka broker on {self.bootstrap_servers} {reason}\n"
            f"--- {self.console_log} (tail)\n{_tail_file(self.console_log, 20)}\n"
            f"--- {self.server_log} (tail)\n{_tail_file(self.server_log, 40)}"
        )

    def _wait_until_ready(self, deadline: float) -> None:
        last_error = "not probed yet"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise self._startup_failure(f"exited during start-up (exit code {code})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._startup_failure(f"not ready in time; last probe error: {last_error}")
            # Probing with aiokafka only once the port accepts TCP keeps its connection-error
            # logging out of the output while the JVM is still booting.
            if _port_accepts_connections(self.port):
                probe_timeout = min(5.0, max(0.5, remaining))
                last_error = _run_in_thread(partial(self._probe, probe_timeout), probe_timeout + 5)
                if not last_error:
                    return
            else:
                last_error = "port not accepting connections"
            time.sleep(0.2)


# --------------------------------------------------------------------------- CLI


def _parse_scram_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, password


def main(argv: list[str] | None = None) -> int:
    """Command line: `fetch-jars` resolves the jars; `run` starts a broker until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m shared.devstack.kafka", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-jars", help="resolve Kafka's jars with Maven")
    fetch.add_argument("--libs-dir", type=Path, default=None)
    run = commands.add_parser("run", help="start a local broker and keep it up until Ctrl-C")
    run.add_argument("--port", type=int, default=19092)
    run.add_argument("--controller-port", type=int, default=19093)
    run.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    run.add_argument("--heap-mb", type=int, default=512)
    run.add_argument("--partitions", type=int, default=6, help="num.partitions for new topics")
    run.add_argument(
        "--scram-user",
        type=_parse_scram_user,
        action="append",
        default=None,
        metavar="NAME:PASSWORD",
        help="require SASL SCRAM-SHA-512 with this user (repeatable; formats new state only)",
    )
    args = parser.parse_args(argv)

    if args.command == "fetch-jars":
        started = time.monotonic()
        libs = ensure_kafka_jars(args.libs_dir)
        print(f"Kafka jars in {libs} ({time.monotonic() - started:.1f}s)")
        return 0

    broker = LocalKafka(
        args.state_dir,
        port=args.port,
        controller_port=args.controller_port,
        scram_users=dict(args.scram_user) if args.scram_user else None,
        heap_mb=args.heap_mb,
        partitions_default=args.partitions,
    )

    return run_until_interrupted(
        broker,
        lambda seconds: (
            f"Kafka ready on {broker.bootstrap_servers} ({broker.security_protocol}) after "
            f"{seconds:.1f}s; logs in {broker.server_log}; Ctrl-C stops it"
        ),
        exited=f"Kafka exited on its own; see {broker.server_log}",
    )


class _Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...


def run_until_interrupted(server: _Server, ready: Callable[[float], str], exited: str) -> int:
    """A command line's `run`: start the server, print `ready(seconds it took)`, and keep it up
    until Ctrl-C or SIGTERM (exit 0) or until it dies by itself (print `exited`, exit 1)."""

    # SIGTERM (e.g. from a process manager) should stop the server as cleanly as Ctrl-C does.
    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    server.start()
    print(ready(time.monotonic() - started), flush=True)
    try:
        while server.is_running():
            time.sleep(1.0)
        print(exited, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping Kafka ...", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
