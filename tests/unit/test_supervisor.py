"""The devstack's process supervisor, with real child processes (no mocks): a part that dies is
reported with how it died and started again with capped exponential backoff; stop() ends all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.devstack.supervisor import Part, Supervisor, describe_exit, stop_process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def child(argv: list[str]) -> Callable[[], subprocess.Popen[bytes]]:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv)

    return start


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def supervisor(reports: list[str]) -> Iterator[Supervisor]:
    made = Supervisor(first_delay=0.2, max_delay=1.6, stable_after=2.0, report=reports.append)
    yield made
    made.stop(join_timeout=10)


def test_a_part_killed_with_sigkill_is_reported_by_signal_and_started_again(
    supervisor: Supervisor, reports: list[str]
) -> None:
    supervisor.add(Part("sleeper", child(SLEEPER), stop_process))
    supervisor.wait_running(timeout=20)
    first = supervisor.pid("sleeper")
    assert first is not None

    os.kill(first, signal.SIGKILL)

    until(lambda: supervisor.pid("sleeper") not in (None, first))
    assert supervisor.is_running("sleeper")
    assert supervisor.restarts("sleeper") == 1
    assert any(
        r.startswith("sleeper: exited (killed by SIGKILL") and f"pid {first}" in r for r in reports
    ), reports
    started = [e for e in supervisor.events() if e.kind == "started"]
    assert len(started) == 2
    assert started[1].downtime is not None and started[1].downtime >= 0.2


def test_a_part_that_keeps_exiting_is_restarted_with_doubling_delays_up_to_the_cap(
    supervisor: Supervisor, reports: list[str]
) -> None:
    supervisor.add(
        Part("crasher", child([sys.executable, "-c", "raise SystemExit(3)"]), stop_process)
    )
    until(lambda: supervisor.restarts("crasher") >= 6, timeout=30)
    exits = [r for r in reports if r.startswith("crasher: exited")]
    assert all("exit code 3" in r for r in exits)
    delays = [float(r.rsplit("restarting in ", 1)[1].rstrip("s")) for r in exits[:6]]
    assert delays == [0.2, 0.4, 0.8, 1.6, 1.6, 1.6]


def test_the_backoff_falls_back_to_the_first_delay_after_a_part_stayed_up(
    supervisor: Supervisor, reports: list[str]
) -> None:
    # Up 3 s (longer than stable_after) then dies: every restart waits the first delay again.
    lives = [sys.executable, "-c", "import time; time.sleep(3); raise SystemExit(1)"]
    supervisor.add(Part("steady", child(lives), stop_process))
    until(lambda: supervisor.restarts("steady") >= 2, timeout=30)
    exits = [r for r in reports if r.startswith("steady: exited")]
    assert [r.rsplit("restarting in ", 1)[1] for r in exits[:2]] == ["0.2s", "0.2s"]


def test_a_part_that_fails_to_start_is_tried_again_and_reported(
    supervisor: Supervisor, reports: list[str]
) -> None:
    attempts: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("port 5 already in use")
        return subprocess.Popen(SLEEPER)

    supervisor.add(Part("flaky", start, stop_process))
    supervisor.wait_running(timeout=20)
    assert len(attempts) == 3
    assert [r for r in reports if "did not start" in r] == [
        "flaky: did not start (port 5 already in use); trying again in 0.2s",
        "flaky: did not start (port 5 already in use); trying again in 0.4s",
    ]


def test_stop_ends_every_part_and_restarts_none(supervisor: Supervisor) -> None:
    for name in ("first", "second"):
        supervisor.add(Part(name, child(SLEEPER), stop_process))
    supervisor.wait_running(timeout=20)
    pids = [supervisor.pid(n) for n in supervisor.names]

    supervisor.stop(join_timeout=10)

    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(supervisor.is_running(n) for n in supervisor.names)
    assert [e.part for e in supervisor.events() if e.kind == "stopped"] == ["second", "first"]
    assert all(supervisor.restarts(n) == 0 for n in supervisor.names)


def test_wait_running_names_the_parts_that_are_not_up() -> None:
    def refuse() -> subprocess.Popen[bytes]:
        raise RuntimeError("no binary")

    never = Supervisor(first_delay=5.0, report=lambda _m: None)
    try:
        never.add(Part("broken", refuse, stop_process))
        never.add(Part("fine", child(SLEEPER), stop_process))
        with pytest.raises(TimeoutError, match="broken") as raised:
            never.wait_running(timeout=2.0)
        assert "fine" not in str(raised.value)
    finally:
        never.stop(join_timeout=10)


def test_exit_descriptions_name_the_signal_or_the_code() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(137) == "exit code 137"


def test_the_banner_names_the_kafka_controller_port_a_working_token_command_and_what_is_down(
    tmp_path: Path,
) -> None:
    from shared.auth.local import LocalKeys
    from shared.devstack.__main__ import banner
    from shared.devstack.platform import Infra, LocalPlatform, SupervisedService

    platform = LocalPlatform(tmp_path, kafka_port=19092, kafka_controller_port=19093, environ={})
    infra = Infra(
        "127.0.0.1:19092",
        "postgresql://a:b@127.0.0.1:55432/postgres",
        {},
        LocalKeys(tmp_path / "auth"),
    )
    services = [SupervisedService("incident", 8001, tmp_path / "incident.log")]

    def refuse() -> subprocess.Popen[bytes]:
        raise RuntimeError("not today")

    supervisor = Supervisor(first_delay=5.0, report=lambda _m: None)
    try:
        supervisor.add(Part("incident", child(SLEEPER), stop_process))
        supervisor.add(Part("incident-relay", refuse, stop_process))
        supervisor.wait_running(["incident"], timeout=20)
        text = banner(platform, infra, services, supervisor)
    finally:
        supervisor.stop(join_timeout=10)

    assert "controller 127.0.0.1:19093" in text
    assert "`.venv/bin/python -m shared.auth token create" in text
    assert "`python -m shared.auth" not in text
    assert "Started, but down right now: incident-relay (being restarted)." in text
    assert "are running" not in text
