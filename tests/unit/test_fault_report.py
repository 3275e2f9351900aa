"""The fault harness's report (tests/faults/harness.py), from a made-up run: no platform."""

from tests.faults.harness import Kill, LoadStats, Report, Verdict


def _report(kills: list[Kill], verdict: Verdict) -> Report:
    return Report(
        seed=1,
        kills=kills,
        load=LoadStats(),
        verdict=verdict,
        acks=[],
        restarts={},
        unplanned_exits=[],
        seconds=60.0,
        shape="3 brokers, 2 replicas per service, 2 relays per publishing service",
    )


def test_publish_delays_count_against_the_outage_their_event_was_written_in() -> None:
    verdict = Verdict(
        publish_delays=[0.02, 6.0, 0.03, 9.0, 0.01],
        written_at=[100.0, 106.0, 120.0, 301.0, 400.0],
    )
    broker = Kill("broker", "kafka-2", 11, 0.0, wall=100.5, all_ready=5.0, in_sync=6.0)
    relay = Kill("relay", "incident-relay-2", 12, 0.0, wall=300.0, all_ready=2.0)
    unrecovered = Kill("service", "incident-2", 13, 0.0, wall=399.0)

    report = _report([broker, relay, unrecovered], verdict)

    # The broker's outage runs until its partitions are in sync again, not just until it is up.
    assert report.delays_during_outages() == {"broker": [6.0], "relay": [9.0]}
    text = report.text()
    assert "the 1 written while a broker was down or recovering" in text
    assert "kafka-2" in text and "incident-relay-2" in text
    assert "in sync   6.0s" in text
    assert text.splitlines()[1].startswith("shape: 3 brokers, 2 replicas per service")
