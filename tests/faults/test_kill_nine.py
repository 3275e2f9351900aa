"""kill -9 of each kind of part under load: the supervisor brings it back, and nothing
acknowledged is lost or doubled on its way to the database, Kafka and the ledger.

The short run of the fault tier (a kill of each kind, in a seeded random order); `make chaos`
runs a long one. ITSM_FAULT_SEED repeats a run's schedule.
"""

import os
import random

import pytest

from tests.conftest import STATE_DIR
from tests.faults.harness import Plan, failures, run_faults, schedule

pytestmark = pytest.mark.faults


def test_killing_a_service_a_relay_the_broker_and_postgres_loses_and_doubles_nothing():
    seed = int(os.environ.get("ITSM_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"fault seed {seed} (ITSM_FAULT_SEED={seed} repeats this schedule)")
    plan = Plan(kills=schedule(4, random.Random(seed)), seed=seed)

    report = run_faults(STATE_DIR / "faults", plan)
    print(report.text())

    verdict = report.verdict
    assert not verdict.unrecovered, report.text()
    assert sorted(k.kind for k in report.kills) == sorted(plan.kills), report.text()
    # Each part was running again, with every service and relay ready, within the limit.
    assert all(k.all_ready is not None for k in report.kills), report.text()
    assert report.load.creates >= 20 and report.load.updates >= 5, report.text()
    assert not verdict.duplicated and not verdict.missing and not verdict.stale, report.text()
    assert not verdict.outbox_left, report.text()
    assert not verdict.kafka_wrong, report.text()
    assert not verdict.ledger_wrong and not verdict.ledger_not_on_kafka, report.text()
    assert not verdict.kafka_not_in_ledger, report.text()
    assert verdict.events_on_kafka >= report.load.creates + report.load.updates
    assert failures(report) == []
