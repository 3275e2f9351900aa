"""`python -m shared.devstack run`: the whole platform locally, until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from shared.devstack.kafka import REPO_ROOT, LocalKafka
from shared.devstack.platform import Infra, LocalPlatform, SupervisedService
from shared.devstack.supervisor import Supervisor
from shared.registry import DEFAULT_HTTP_PORTS, PUBLISHING_SERVICES


def run(state_dir: Path, kafka_scram: bool = False, kafka_acls: bool = False) -> int:
    """Start Kafka, PostgreSQL, the registry's services and the outbox relays of those that
    publish (each a process of its own, as deployed) under a supervisor that restarts any that dies;
    print where they listen and every restart as it happens; stop everything on Ctrl-C.

    With kafka_scram the broker requires SASL/SCRAM-SHA-512 and each service logs in as its own
    user (passwords in the state folder's kafka-users.json), as in production; with kafka_acls
    also KRaft's authorizer and the ACLs of shared.kafka_acl (each user only what it needs).
    """
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    platform = LocalPlatform(state_dir, kafka_scram=kafka_scram, kafka_acls=kafka_acls)
    supervisor = Supervisor(report=lambda message: print(_stamp(message), flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print("starting PostgreSQL and Kafka, then the services ...", flush=True)
        infra, services = platform.supervise(
            supervisor, DEFAULT_HTTP_PORTS, separate_relays=PUBLISHING_SERVICES
        )
        print(banner(platform, infra, services, supervisor, kafka_scram or kafka_acls), flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        supervisor.stop()
    return 0


def banner(
    platform: LocalPlatform,
    infra: Infra,
    services: list[SupervisedService],
    supervisor: Supervisor,
    kafka_scram: bool = False,
) -> str:
    """Where everything listens, demo tokens, and whether every part is running right now."""
    lines = [""]
    mode = "SASL_PLAINTEXT, SCRAM-SHA-512 users" if kafka_scram else "PLAINTEXT"
    if isinstance(platform.kafka, LocalKafka):
        if platform.kafka.acls:
            mode += ", ACLs"
        lines.append(
            f"  Kafka       {infra.bootstrap_servers}  ({mode}; "
            f"controller 127.0.0.1:{platform.kafka.controller_port})"
        )
    elif platform.kafka is not None:
        nodes = len(platform.kafka.nodes)
        lines.append(f"  Kafka       {infra.bootstrap_servers}  ({mode}; {nodes} nodes)")
    else:
        lines.append(f"  Kafka       {infra.bootstrap_servers}  ({mode}; not started here)")
    lines.append(
        f"  PostgreSQL  {infra.admin_dsn.split('@')[-1]}  (admin DSN in {platform.state_dir})"
    )
    for service in services:
        docs = "" if service.name.endswith("-relay") else f"   docs {service.url}/docs"
        lines.append(f"  {service.name:<14} {service.url}{docs}   log {service.log_path}")
    issuer = infra.keys.issuer()
    day = 24 * 3600
    admin = issuer.mint(
        subject="demo-admin", tenants=["demo"], roles=["tenant_admin"], ttl_seconds=day
    )
    agent = issuer.mint(subject="demo-agent", tenants=["demo"], roles=["agent"], ttl_seconds=day)
    lines += [
        "",
        "Tokens for the demo tenant (24 h; more, from this folder, with",
        "`.venv/bin/python -m shared.auth token create --tenant demo --role agent --ttl 8h`):",
        f"  admin  {admin}",
        f"  agent  {agent}",
        "",
    ]
    down = [name for name in supervisor.names if not supervisor.is_running(name)]
    if down:
        lines.append(f"Started, but down right now: {', '.join(down)} (being restarted).")
    else:
        lines.append(f"All {len(supervisor.names)} parts are running.")
    lines.append(
        "A part that dies is restarted and reported below (docs/operations.md). "
        "Ctrl-C stops everything."
    )
    return "\n".join(lines)


def _stamp(message: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {message}"


def main() -> None:
    """Command line of the local platform."""
    parser = argparse.ArgumentParser(prog="python -m shared.devstack")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "run")
    parser.add_argument(
        "--kafka-scram",
        action="store_true",
        help="require SCRAM logins on Kafka, one user per service (needs a fresh --state-dir)",
    )
    parser.add_argument(
        "--kafka-acls",
        action="store_true",
        help="--kafka-scram plus the authorizer and each user's ACLs (needs a fresh --state-dir)",
    )
    args = parser.parse_args()
    sys.exit(run(args.state_dir, kafka_scram=args.kafka_scram, kafka_acls=args.kafka_acls))


if __name__ == "__main__":
    main()
