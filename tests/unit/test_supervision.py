"""One supervisor for every background loop: failures are logged once, counted, restarted."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from shared.supervision import (
    BackgroundTask,
    PerTenant,
    SupervisionMetrics,
    SupervisionPolicy,
    Supervisor,
)

FAST = SupervisionPolicy(first_backoff=0.01, max_backoff=0.02, healthy_after=60, grace=60)


class Clock:
    """A clock the test moves by hand (readiness and the fatal limit are read from it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(
    policy: SupervisionPolicy = FAST, **kwargs: object
) -> tuple[Supervisor, CollectorRegistry]:
    registry = CollectorRegistry()
    return Supervisor("test", SupervisionMetrics(registry), policy, **kwargs), registry  # type: ignore[arg-type]


def failures(registry: CollectorRegistry, task: str) -> float:
    return registry.get_sample_value("itsm_background_task_failures_total", {"task": task}) or 0


class Flaky:
    """A loop that fails its first `fail` runs, then runs until cancelled."""

    def __init__(self, fail: int, error: Exception | None = None) -> None:
        self.fail = fail
        self.error = error or ConnectionRefusedError("database unreachable")
        self.runs = 0
        self.running = asyncio.Event()
        self.cleaned_up = False

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.fail:
            raise self.error
        self.running.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cleaned_up = True


async def test_a_failing_task_is_logged_once_with_its_name_and_traceback_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shared.supervision")
    sup, registry = supervisor()
    loop = Flaky(fail=3)
    sup.start(BackgroundTask("outbox-relay", loop))
    await asyncio.wait_for(loop.running.wait(), timeout=5)

    assert loop.runs == 4
    assert failures(registry, "outbox-relay") == 3
    assert sup.restarts("outbox-relay") == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    # The first failure at ERROR with the traceback; the same failure again only at WARNING.
    assert len(errors) == 1
    assert errors[0].task == "outbox-relay"  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None
    again = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(again) == 2 and all(r.exc_info is None for r in again)
    assert registry.get_sample_value("itsm_background_task_up", {"task": "outbox-relay"}) == 1
    await sup.stop()
    assert loop.cleaned_up


async def test_a_different_failure_is_logged_at_error_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, _ = supervisor()
    errors = iter([OSError("refused"), ValueError("bad row"), ValueError("bad row")])
    done = asyncio.Event()

    async def loop() -> None:
        try:
            raise next(errors)
        except StopIteration:
            done.set()
            await asyncio.Event().wait()

    sup.start(BackgroundTask("sla-scheduler", loop))
    await asyncio.wait_for(done.wait(), timeout=5)
    await sup.stop()
    assert [r.levelno for r in caplog.records if r.name == "shared.supervision"] == [
        logging.ERROR,
        logging.ERROR,
        logging.WARNING,
    ]


async def test_a_task_that_returns_is_restarted_since_loops_run_until_stopped() -> None:
    sup, registry = supervisor()
    runs = 0
    again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            return
        again.set()
        await asyncio.Event().wait()

    sup.start(BackgroundTask("census", loop))
    await asyncio.wait_for(again.wait(), timeout=5)
    assert failures(registry, "census") == 1
    await sup.stop()


async def test_readiness_names_a_task_down_longer_than_the_grace_period() -> None:
    clock = Clock()
    policy = SupervisionPolicy(first_backoff=0.01, max_backoff=0.01, healthy_after=5, grace=30)
    sup, _ = supervisor(policy, clock=clock)
    loop = Flaky(fail=10**9)
    sup.start(BackgroundTask("outbox-relay", loop))
    sup.start(BackgroundTask("auto-close", Flaky(fail=0)))
    await _until(lambda: loop.runs >= 2)
    assert sup.readiness() == "ok"  # down, but within the grace period

    clock.now += 31
    await _until(lambda: "outbox-relay" in sup.down())
    assert sup.readiness().startswith("down: outbox-relay for 3")
    assert "ConnectionRefusedError: database unreachable" in sup.readiness()
    assert "auto-close" not in sup.readiness()
    await sup.stop()


async def test_a_restarted_task_that_stays_up_counts_as_recovered() -> None:
    clock = Clock()
    policy = SupervisionPolicy(first_backoff=0.01, max_backoff=0.01, healthy_after=5, grace=1)
    sup, _ = supervisor(policy, clock=clock)
    loop = Flaky(fail=1)
    sup.start(BackgroundTask("revocation-listener", loop))
    await asyncio.wait_for(loop.running.wait(), timeout=5)
    clock.now += 2
    assert "revocation-listener" in sup.down()  # restarted, but not up for long yet
    clock.now += 5
    assert sup.readiness() == "ok"
    await sup.stop()


async def test_a_task_down_past_the_fatal_limit_gives_up_on_the_process_once() -> None:
    clock = Clock()
    policy = SupervisionPolicy(first_backoff=0.01, max_backoff=0.01, grace=1, fatal_after=10)
    reasons: list[str] = []
    sup, _ = supervisor(policy, clock=clock, on_fatal=reasons.append)
    loop = Flaky(fail=10**9)
    sup.start(BackgroundTask("outbox-relay", loop))
    await _until(lambda: loop.runs >= 2)
    assert reasons == []
    clock.now += 11
    await _until(lambda: bool(reasons))
    runs = loop.runs
    await _until(lambda: loop.runs >= runs + 3)  # still restarted while the process stops
    assert len(reasons) == 1
    assert "outbox-relay" in reasons[0] and sup.fatal == reasons[0]
    await sup.stop()


async def test_two_tasks_may_not_share_a_name() -> None:
    sup, _ = supervisor()
    sup.start(BackgroundTask("census", Flaky(fail=0)))
    with pytest.raises(ValueError, match="census"):
        sup.start(BackgroundTask("census", Flaky(fail=0)))
    await sup.stop()


async def _until(condition: object, timeout: float = 5.0) -> None:
    """Yield to the loop until the condition holds (the tasks under test run meanwhile)."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_one_tenants_failure_is_logged_once_counted_and_the_other_tenants_go_on(caplog):
    registry = CollectorRegistry()
    failures = Counter("x_failures_total", "failures", ["projection"], registry=registry)
    apart = PerTenant("kpi-projection", failures)
    broken = {"t-b"}

    async def share(tenant: str) -> int:
        if tenant in broken:
            raise RuntimeError(f"the log of {tenant} lacks entries in [0, 16)")
        return 2

    def round_() -> list[int]:
        return [apart.run(t, lambda t=t: share(t)) for t in ("t-a", "t-b", "t-c")]

    with caplog.at_level(logging.WARNING, logger="shared.supervision"):
        assert await asyncio.gather(*round_()) == [2, 0, 2]
        assert await asyncio.gather(*round_()) == [2, 0, 2]
    assert apart.failing == {"t-b"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is not None and "t-b" in errors[0].message
    assert len(warnings) == 1 and "still fails" in warnings[0].message
    assert registry.get_sample_value("x_failures_total", {"projection": "kpi-projection"}) == 2

    broken.clear()
    assert await asyncio.gather(*round_()) == [2, 2, 2]
    assert apart.failing == frozenset()


async def test_a_cancelled_tenant_share_cancels_the_round():
    async def cancelled() -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await PerTenant("kpi-projection").run("t-a", cancelled)
