"""One Idempotency-Key mechanism for two users: the HTTP middleware and the streamed import."""

from __future__ import annotations

import pytest

from shared import idempotency
from shared.http import idempotency as http_idempotency
from shared.http.problems import PROBLEM_BASE, problem_of


@pytest.mark.parametrize("key", ["a", "x" * 255, "retry-42:!~"])
def test_printable_ascii_keys_of_1_to_255_characters_are_accepted(key: str):
    assert idempotency.valid_key(key)
    idempotency.check_key(key)
    assert http_idempotency.key_problem(key) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\t", "naïve", "line\n"])
def test_other_keys_are_refused_alike_by_both_users(key: str):
    with pytest.raises(idempotency.InvalidKey) as refused:
        idempotency.check_key(key)
    typed = problem_of(refused.value)
    middleware = http_idempotency.key_problem(key)
    assert middleware is not None
    assert (typed.status, typed.title, typed.type, typed.detail, typed.errors) == (
        middleware.status,
        middleware.title,
        middleware.type,
        middleware.detail,
        middleware.errors,
    )


def test_the_middleware_and_the_import_share_header_names_and_retention():
    assert http_idempotency.HEADER == idempotency.HEADER == "Idempotency-Key"
    assert http_idempotency.REPLAYED_HEADER == idempotency.REPLAYED_HEADER
    assert http_idempotency.DEFAULT_RETENTION == idempotency.DEFAULT_RETENTION
    assert http_idempotency.PARAMETER["schema"]["pattern"] == idempotency.KEY_PATTERN.pattern


def test_a_reused_key_refused_by_a_use_case_is_answered_as_the_middleware_answers_it():
    answer = http_idempotency.key_error_problem(idempotency.KeyReused())
    expected = http_idempotency.key_reused()
    assert (answer.status, answer.title, answer.type, answer.detail, answer.errors) == (
        expected.status,
        expected.title,
        expected.type,
        expected.detail,
        expected.errors,
    )
    assert (answer.status, answer.type) == (422, PROBLEM_BASE + "idempotency-key-reused")


def test_a_key_in_progress_is_a_409_of_its_own_problem_type_naming_the_header():
    answer = http_idempotency.key_error_problem(
        idempotency.KeyInProgress("an import", "import-in-progress")
    )
    assert (answer.status, answer.title, answer.type) == (
        409,
        "Conflict",
        PROBLEM_BASE + "import-in-progress",
    )
    assert answer.detail == (
        "an import with this Idempotency-Key is in progress; retry once it has finished"
    )
    assert answer.errors == [{"in": "header", "field": "Idempotency-Key", "detail": "in progress"}]
