"""The one mapping from the typed errors of application and domain code to problem+json."""

from __future__ import annotations

import pytest

from shared import errors
from shared.http.problems import problem_of


def test_not_found_is_404_naming_the_object() -> None:
    problem = problem_of(errors.NotFound("incident", "42"))
    assert (problem.status, problem.detail) == (404, "incident 42 does not exist")


def test_an_invalid_transition_is_409_naming_the_allowed_moves_as_a_field_and_an_extension() -> (
    None
):
    problem = problem_of(errors.InvalidTransition("incident", "new", "closed", ["in_progress"]))
    assert problem.status == 409
    assert problem.extensions == {"allowed": ["in_progress"]}
    assert problem.errors == [{"in": "body", "field": "to", "detail": "allowed: in_progress"}]


def test_a_final_state_names_no_allowed_move() -> None:
    problem = problem_of(errors.InvalidTransition("incident", "closed", "new", []))
    assert problem.errors is not None
    assert problem.errors[0]["detail"] == "allowed: none (final state)"


def test_a_stale_version_is_412_carrying_the_current_etag() -> None:
    problem = problem_of(errors.StaleVersion("the incident", 3, 2))
    assert problem.status == 412
    assert problem.headers == {"ETag": '"3"'}


def test_a_validation_failure_is_422_naming_each_field_where_it_was_sent() -> None:
    problem = problem_of(
        errors.ValidationFailed(
            [errors.FieldError("ci_id", "unknown"), errors.FieldError("limit", "too big", "query")]
        )
    )
    assert problem.status == 422
    assert problem.type == "urn:itsm:problem:validation"
    assert problem.detail == "invalid: ci_id, limit"
    assert problem.errors == [
        {"in": "body", "field": "ci_id", "detail": "unknown"},
        {"in": "query", "field": "limit", "detail": "too big"},
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.Conflict("already linked"), 409),
        (errors.Forbidden("you cannot approve your own request"), 403),
        (errors.PreconditionFailed("the baseline changed"), 412),
        (errors.DomainError("refused"), 422),
    ],
)
def test_each_typed_error_has_its_status(error: errors.DomainError, status: int) -> None:
    assert problem_of(error).status == status
