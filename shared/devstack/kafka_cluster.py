"""Three (or more) KRaft Kafka nodes on loopback, each both broker and controller, as a cluster.

Each node is a LocalKafka in a folder of its own (`<state>/kafka-<id>`), with its own client and
controller ports, formatted once with the cluster's id (kept in `<state>/cluster-id`) and the
static voter list of all nodes. Topics are replicated to every node (`default.replication.factor`
3) and a write needs two in-sync replicas (`min.insync.replicas` 2), Kafka's internal topics
likewise, and no replica that fell out of sync may become leader: so one node can die (kill -9)
at any moment without losing an acknowledged record or stopping producers and consumers. A node
restarted after a kill keeps its id and its data folder and catches up from the others.

    python -m shared.devstack.kafka_cluster run [--port 19192]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.devstack.kafka import (
    DEFAULT_STATE_DIR,
    SCRAM_MECHANISM,
    LocalKafka,
    new_cluster_id,
    run_until_interrupted,
)

DEFAULT_CLUSTER_STATE_DIR: Path = DEFAULT_STATE_DIR.parent / "kafka-cluster"


# A node restarted after a kill -9 recovers every partition it holds, one after another, before
# it serves again, and every node holds every partition: the consumer offsets topic's default 50
# were most of them. A handful of consumer groups needs only a few.
_CLUSTER_PROPERTIES = {"offsets.topic.num.partitions": "6"}


class LocalKafkaCluster:
    """`nodes` combined broker+controller KRaft nodes on 127.0.0.1, a quorum of all of them."""

    def __init__(
        self,
        state_dir: Path,
        node_ports: Sequence[tuple[int, int]] | None = None,
        *,
        port: int = 19192,
        nodes: int = 3,
        scram_users: dict[str, str] | None = None,
        heap_mb: int = 384,
        partitions_default: int = 6,
        min_insync_replicas: int = 2,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        """`node_ports` gives each node's (client port, controller port); without it node i
        (from 0) listens on port + 2i and its controller on port + 2i + 1."""
        if node_ports is None:
            node_ports = [(port + 2 * i, port + 2 * i + 1) for i in range(nodes)]
        if len(node_ports) < 3:
            raise ValueError("a cluster needs at least three nodes (a quorum that survives one)")
        if not 1 <= min_insync_replicas < len(node_ports):
            raise ValueError("min_insync_replicas must leave room for one node to be down")
        self.state_dir = state_dir.resolve()
        self.replication_factor = len(node_ports)
        self.min_insync_replicas = min_insync_replicas
        voters = ",".join(
            f"{node_id}@127.0.0.1:{controller}"
            for node_id, (_client, controller) in enumerate(node_ports, start=1)
        )
        self.nodes: list[LocalKafka] = [
            LocalKafka(
                self.state_dir / f"kafka-{node_id}",
                port=client,
                controller_port=controller,
                scram_users=scram_users,
                heap_mb=heap_mb,
                partitions_default=partitions_default,
                extra_properties={**_CLUSTER_PROPERTIES, **(extra_properties or {})},
                node_id=node_id,
                quorum_voters=voters,
                cluster_id=None,  # read (or made) on start: see _cluster_id()
                replication_factor=self.replication_factor,
                min_insync_replicas=min_insync_replicas,
            )
            for node_id, (client, controller) in enumerate(node_ports, start=1)
        ]
        self._cluster_id_file = self.state_dir / "cluster-id"

    # ---- what LocalKafka offers, for the cluster as a whole

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client listener, comma-separated (clients find the rest from any one)."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def scram_users(self) -> dict[str, str] | None:
        """The SCRAM users every node was formatted with (None without SASL)."""
        return self.nodes[0].scram_users

    @property
    def security_protocol(self) -> str:
        """The client listeners' protocol: SASL_PLAINTEXT with SCRAM users, else PLAINTEXT."""
        return self.nodes[0].security_protocol

    @property
    def sasl_mechanism(self) -> str | None:
        """SCRAM-SHA-512 when SCRAM users are configured, else None."""
        return None if self.scram_users is None else SCRAM_MECHANISM

    def client_options(self) -> dict[str, str]:
        """Keyword arguments for aiokafka clients, bootstrapping from every node."""
        return {**self.nodes[0].client_options(), "bootstrap_servers": self.bootstrap_servers}

    def node_name(self, node: LocalKafka) -> str:
        """The node's name in logs and in the fault tier: kafka-<node id>."""
        return f"kafka-{node.node_id}"

    # ---- lifecycle

    def prepare(self) -> None:
        """Give every node the cluster's id (made once, kept in the state folder)."""
        cluster_id = self._cluster_id()
        for node in self.nodes:
            node.cluster_id = cluster_id

    def start(self, timeout: float = 180.0) -> None:
        """Start every node at once and wait until each serves clients.

        At once, because no node is ready before a majority of the controllers has elected a
        leader: starting them one after another would wait forever on the first."""
        self.prepare()
        with ThreadPoolExecutor(len(self.nodes), thread_name_prefix="kafka-node") as pool:
            futures = [pool.submit(node.start, timeout) for node in self.nodes]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise RuntimeError(f"the Kafka cluster did not start: {failed[0]}") from failed[0]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after the timeout), all at once.

        All at once, because a node that stops while the others run hands its partitions over
        first, and the last ones would wait for a quorum that is gone."""
        with ThreadPoolExecutor(len(self.nodes), thread_name_prefix="kafka-stop") as pool:
            for future in [pool.submit(node.stop, timeout) for node in self.nodes]:
                with contextlib.suppress(Exception):
                    future.result()

    def is_running(self) -> bool:
        """Whether every node's process is alive."""
        return all(node.is_running() for node in self.nodes)

    def _cluster_id(self) -> str:
        # Every node must be formatted with the same id; a restarted node's data folder is
        # already formatted, so the id only matters for nodes formatted later.
        if self._cluster_id_file.is_file():
            return self._cluster_id_file.read_text().strip()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        self._cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id


def main(argv: list[str] | None = None) -> int:
    """Command line: `run` starts a three-node cluster until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.devstack.kafka_cluster", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a local cluster and keep it up until Ctrl-C")
    run.add_argument("--port", type=int, default=19192, help="node i listens on port + 2i")
    run.add_argument("--nodes", type=int, default=3)
    run.add_argument("--state-dir", type=Path, default=DEFAULT_CLUSTER_STATE_DIR)
    run.add_argument("--heap-mb", type=int, default=384)
    args = parser.parse_args(argv)

    cluster = LocalKafkaCluster(
        args.state_dir, port=args.port, nodes=args.nodes, heap_mb=args.heap_mb
    )

    return run_until_interrupted(
        cluster,
        lambda seconds: (
            f"Kafka cluster ready on {cluster.bootstrap_servers} after {seconds:.1f}s; "
            "Ctrl-C stops it"
        ),
        exited="a Kafka node exited on its own; see its logs",
    )


if __name__ == "__main__":
    sys.exit(main())
