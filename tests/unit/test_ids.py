"""Time-ordered ids (shared/ids.py): valid version 7 UUIDs that sort by creation time."""

from __future__ import annotations

import pickle
import time
import uuid
from types import SimpleNamespace

import pytest

from shared.ids import new_id, new_ids


def test_a_new_id_is_a_version_7_uuid_of_the_rfc_variant_carrying_its_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_a_new_id_behaves_like_any_uuid_parsed_from_its_text() -> None:
    made = new_id()
    parsed = uuid.UUID(str(made))
    assert parsed == made
    assert hash(parsed) == hash(made)
    assert parsed.bytes == made.bytes
    assert pickle.loads(pickle.dumps(made)) == made
    assert {made: 1}[parsed] == 1


def test_ids_made_later_sort_after_ids_made_earlier(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import ids

    now_ns = time.time_ns()
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: now_ns))
    first = new_id()
    now_ns += 1_000_000  # the next millisecond, the id's time resolution
    second = new_id()
    assert first < second
    assert str(first) < str(second)


def test_a_batch_of_ids_is_ascending_and_has_no_duplicates() -> None:
    batch = new_ids(5000)
    assert batch == sorted(batch)
    assert len(set(batch)) == 5000
    assert all(i.version == 7 for i in batch)
    assert new_ids(0) == []


def test_ids_differ_in_their_random_bits_within_one_millisecond() -> None:
    batch = new_ids(1000)
    assert len({i.int & ((1 << 62) - 1) for i in batch}) == 1000
