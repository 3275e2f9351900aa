"""The fault tier at cluster shape: a three-node KRaft cluster (replication 3, min.insync.replicas
2), two replicas of every service and two relays per publishing service, under load spread over
the replicas. One broker is killed, later another (the first back and in sync before), then a
service replica and a relay: nothing acknowledged is lost or doubled on its way to the database,
Kafka and the ledger, and each aggregate's events stay in order.

The short run; `make chaos` runs a long one at this shape too. ITSM_FAULT_SEED repeats a run's
choice of broker, replica and relay.
"""

import os
import random

import pytest

from tests.conftest import STATE_DIR
from tests.faults.harness import Plan, assert_nothing_lost_or_doubled, run_faults

pytestmark = pytest.mark.faults


def test_at_cluster_shape_killing_two_brokers_a_replica_and_a_relay_loses_and_doubles_nothing():
    seed = int(os.environ.get("ITSM_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"fault seed {seed} (ITSM_FAULT_SEED={seed} repeats this run's choices)")
    plan = Plan(
        kills=["broker", "service", "broker", "relay"],
        seed=seed,
        brokers=3,
        replicas=2,
        relays=2,
    )

    report = run_faults(STATE_DIR / "faults-cluster", plan)
    print(report.text())

    assert [k.kind for k in report.kills] == plan.kills, report.text()
    brokers = [k.part for k in report.kills if k.kind == "broker"]
    assert len(set(brokers)) == 2 and all(b.startswith("kafka-") for b in brokers), report.text()
    # The second broker died only after the first was back with every partition in sync.
    first, second = (k for k in report.kills if k.kind == "broker")
    assert first.in_sync is not None and first.at + first.in_sync < second.at, report.text()
    # Both replicas of each service under load took acknowledged writes.
    assert {"incident", "incident-2", "config", "config-2"} <= set(report.load.by_replica)
    assert_nothing_lost_or_doubled(report)
