"""kill -9 of each kind of part under load: the supervisor brings it back, and nothing
acknowledged is lost or doubled on its way to the database, Kafka and the ledger.

The short run of the fault tier (a kill of each kind, in a seeded random order); `make chaos`
runs a long one. ITSM_FAULT_SEED repeats a run's schedule.
"""

import os
import random

import pytest

from tests.conftest import STATE_DIR
from tests.faults.harness import Plan, assert_nothing_lost_or_doubled, run_faults, schedule

pytestmark = pytest.mark.faults


def test_killing_a_service_a_relay_the_broker_and_postgres_loses_and_doubles_nothing():
    seed = int(os.environ.get("ITSM_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"fault seed {seed} (ITSM_FAULT_SEED={seed} repeats this schedule)")
    plan = Plan(kills=schedule(4, random.Random(seed)), seed=seed)

    report = run_faults(STATE_DIR / "faults", plan)
    print(report.text())

    assert sorted(k.kind for k in report.kills) == sorted(plan.kills), report.text()
    # Each part was running again, with every service and relay ready, within the limit, and
    # nothing acknowledged was lost or doubled.
    assert_nothing_lost_or_doubled(report)
