from shared.outbox import OutboxRelay


def rows(*keys):
    return [{"message_key": k, "position": i} for i, k in enumerate(keys)]


def test_every_acknowledged_row_is_published():
    assert OutboxRelay._settle(rows("a", "b", "a"), [None, None, None]) == ([0, 1, 2], [])


def test_a_failed_row_holds_back_later_rows_of_its_aggregate_only():
    published, failed = OutboxRelay._settle(
        rows("a", "b", "a", "b"), [RuntimeError("x"), None, None, None]
    )
    assert published == [1, 3]
    assert failed == [0, 2]


def test_earlier_rows_of_an_aggregate_stay_published_when_a_later_one_fails():
    published, failed = OutboxRelay._settle(rows("a", "a", "a"), [None, TimeoutError(), None])
    assert published == [0]
    assert failed == [1, 2]
