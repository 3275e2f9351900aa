"""Gap detection and the timeline's references (pure parts of the completeness task)."""

import uuid

from services.reporting.application.completeness import (
    Gap,
    Row,
    checks_versions,
    examine,
    gap_event,
    references_of,
)

T = "t1"
INCIDENT = "itsm.incident.updated.v1"


def rows(subject, versions, *, type=INCIDENT, start=1, tenant=T):
    return [Row(start + i, tenant, type, subject, v, {}) for i, v in enumerate(versions)]


def test_consecutive_versions_and_repeats_at_one_version_are_no_gap():
    outcome = examine(rows("a", [1, 2, 2, 3, 4]), {}, [])
    assert outcome.new_gaps == []
    assert outcome.versions == {(T, "a"): 4}


def test_a_skipped_version_is_a_version_gap_naming_the_missing_versions():
    outcome = examine(rows("a", [1, 2, 5]), {}, [])
    [gap] = outcome.new_gaps
    assert (gap.kind, gap.missing, gap.last_seen_version, gap.seen_version) == (
        "version_gap",
        [3, 4],
        2,
        5,
    )
    assert gap.position == 3


def test_an_aggregate_first_seen_above_version_one_is_a_missing_event():
    [gap] = examine(rows("a", [3]), {}, []).new_gaps
    assert (gap.kind, gap.missing, gap.last_seen_version) == ("missing_event", [1, 2], None)


def test_the_last_version_stored_before_counts_across_batches():
    assert examine(rows("a", [4]), {(T, "a"): 3}, []).new_gaps == []
    [gap] = examine(rows("a", [6]), {(T, "a"): 3}, []).new_gaps
    assert gap.missing == [4, 5]


def test_a_relay_publishing_older_versions_again_after_a_restart_is_never_a_gap():
    # v1..v3, the relay restarts and publishes v2 and v3 again (new ids), then v4.
    outcome = examine(rows("a", [1, 2, 3, 2, 3, 4]), {}, [])
    assert outcome.new_gaps == []
    assert outcome.versions == {(T, "a"): 4}
    # the same, the repeats arriving in a later batch
    assert examine(rows("a", [1, 2, 3]), {(T, "a"): 3}, []).new_gaps == []


def test_a_late_version_fills_its_gap_and_the_last_fill_closes_it():
    stored = Gap(T, "a", "version_gap", [3, 4], [3, 4], 2, 5, 10, gap_id=7)
    outcome = examine(rows("a", [4], start=20), {(T, "a"): 5}, [stored])
    assert outcome.new_gaps == []
    [changed] = outcome.changed_gaps
    assert changed.still_missing == [3] and changed.closed_position is None
    outcome = examine(rows("a", [3], start=21), {(T, "a"): 5}, [changed])
    [closed] = outcome.changed_gaps
    assert closed.still_missing == [] and closed.closed_position == 21
    # the last version does not go back
    assert outcome.versions == {}


def test_tenants_and_aggregates_are_counted_apart():
    batch = rows("a", [1, 2], tenant="t1") + rows("a", [1], tenant="t2", start=3)
    batch += rows("b", [1], start=4)
    assert examine(batch, {}, []).new_gaps == []


def test_families_that_do_not_number_versions_one_by_one_are_not_checked():
    assert checks_versions("itsm.incident.created.v1")
    assert checks_versions("itsm.config.ci.updated.v1")
    assert checks_versions("itsm.config.relationship.removed.v1")
    assert not checks_versions("itsm.config.token.revoked.v1")
    assert not checks_versions("itsm.incident.settings_changed.v1")
    assert not checks_versions("itsm.reporting.ledger.checkpoint_signed.v1")
    # A change record's own events number the change's versions; the change service's other
    # events (approval steps, windows, deployments, ...) have subjects of their own.
    assert checks_versions("itsm.change.transitioned.v1")
    assert checks_versions("itsm.change.risk_assessed.v1")
    assert not checks_versions("itsm.change.approval_recorded.v1")
    assert not checks_versions("itsm.change.window_defined.v1")
    assert not checks_versions("itsm.change.gate_decided.v1")
    outcome = examine(rows("settings", [4, 9], type="itsm.incident.settings_changed.v1"), {}, [])
    assert outcome.new_gaps == [] and outcome.versions == {}


def test_references_are_the_subject_its_ids_and_the_id_valued_fields_of_the_data():
    incident, ci, problem, change = (str(uuid.uuid4()) for _ in range(4))
    data = {
        "ci_id": ci.upper(),
        "links": [{"problem_id": problem}, "not-an-id"],
        "request_id": change,
        "title": f"see {incident}",  # text mentioning an id is not a reference
        "n": 3,
    }
    found = references_of(f"sla/{incident}/response", data)
    assert found[0] == f"sla/{incident}/response"
    assert set(found) == {f"sla/{incident}/response", incident, ci, problem, change}


def test_the_gap_event_names_the_aggregate_and_its_missing_versions():
    gap = Gap(T, "a", "version_gap", [3, 4], [3, 4], 2, 5, 10)
    event = gap_event(gap)
    assert event.aggregate == "a" and event.missing_versions == [3, 4]
    assert event.last_seen_version == 2 and "2 to 5" in event.detail
