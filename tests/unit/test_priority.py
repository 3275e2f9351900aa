import pytest
from pydantic import ValidationError

from services.incident.domain.priority import DEFAULT_MATRIX, PriorityMatrix, priority_of


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        (1, 1, 1),
        (1, 2, 2),
        (2, 1, 2),
        (1, 3, 3),
        (2, 2, 3),
        (3, 1, 3),
        (2, 3, 4),
        (3, 2, 4),
        (3, 3, 5),
    ],
)
def test_default_matrix_is_the_itil_three_by_three(impact, urgency, priority):
    assert priority_of(impact, urgency) == priority


def test_matrix_covers_every_combination_once():
    assert len(DEFAULT_MATRIX) == 9
    assert set(DEFAULT_MATRIX.values()) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(("impact", "urgency"), [(0, 1), (1, 4), (4, 4)])
def test_out_of_range_impact_or_urgency_is_refused(impact, urgency):
    with pytest.raises(ValueError, match="impact and urgency"):
        priority_of(impact, urgency)


# --- a tenant's own matrix --------------------------------------------------------------------

DEFAULT_CELLS = [
    {"impact": impact, "urgency": urgency, "priority": impact + urgency - 1}
    for impact in (1, 2, 3)
    for urgency in (1, 2, 3)
]


def cells_with(**changes):
    """The default cells with the cell (impact, urgency) given as `i<impact>u<urgency>=value`."""
    cells = [dict(cell) for cell in DEFAULT_CELLS]
    for name, priority in changes.items():
        impact, urgency = int(name[1]), int(name[3])
        for cell in cells:
            if (cell["impact"], cell["urgency"]) == (impact, urgency):
                cell["priority"] = priority
    return cells


def refusals(payload) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as refused:
        PriorityMatrix.model_validate(payload)
    return [(e["loc"], e["msg"]) for e in refused.value.errors()]


@pytest.mark.parametrize(("impact", "urgency"), list(DEFAULT_MATRIX))
def test_the_default_matrix_gives_what_priority_of_gives(impact, urgency):
    assert PriorityMatrix.default().priority(impact, urgency) == priority_of(impact, urgency)


def test_the_default_matrix_is_the_itil_formula_in_the_documented_json_shape():
    assert PriorityMatrix.default().model_dump(mode="json") == {"cells": DEFAULT_CELLS}


def test_a_matrix_survives_a_round_trip_through_json():
    matrix = PriorityMatrix.model_validate({"cells": cells_with(i1u3=2, i2u3=3)})
    assert PriorityMatrix.model_validate_json(matrix.model_dump_json()) == matrix


def test_a_tenant_matrix_gives_its_own_priorities():
    matrix = PriorityMatrix.model_validate({"cells": cells_with(i1u3=2, i3u3=4)})
    assert matrix.priority(1, 3) == 2
    assert matrix.priority(3, 3) == 4
    assert matrix.priority(2, 2) == 3


def test_cells_may_come_in_any_order_and_are_kept_sorted():
    matrix = PriorityMatrix.model_validate({"cells": list(reversed(DEFAULT_CELLS))})
    assert matrix == PriorityMatrix.default()
    assert [(c.impact, c.urgency) for c in matrix.cells] == sorted(DEFAULT_MATRIX)


def test_a_matrix_from_a_mapping_is_validated_like_json():
    assert PriorityMatrix.from_mapping(DEFAULT_MATRIX) == PriorityMatrix.default()
    assert PriorityMatrix.default().as_mapping() == DEFAULT_MATRIX
    with pytest.raises(ValidationError):
        PriorityMatrix.from_mapping({(1, 1): 1})


@pytest.mark.parametrize(("impact", "urgency"), [(0, 1), (1, 4), (4, 4), ("1", 1)])
def test_a_tenant_matrix_refuses_out_of_range_impact_or_urgency(impact, urgency):
    with pytest.raises(ValueError, match="impact and urgency"):
        PriorityMatrix.default().priority(impact, urgency)


def test_a_missing_cell_is_named():
    cells = [c for c in DEFAULT_CELLS if (c["impact"], c["urgency"]) != (2, 3)]
    assert refusals({"cells": cells}) == [(("cells",), "impact 2, urgency 3: missing")]


def test_every_missing_cell_is_named():
    [(_, message)] = refusals({"cells": DEFAULT_CELLS[:7]})
    assert message == "impact 3, urgency 2: missing; impact 3, urgency 3: missing"


def test_an_empty_matrix_names_all_nine_cells():
    [(_, message)] = refusals({"cells": []})
    assert message.count("missing") == 9


def test_a_cell_given_twice_is_named():
    cells = [*DEFAULT_CELLS, {"impact": 1, "urgency": 2, "priority": 2}]
    assert refusals({"cells": cells}) == [(("cells",), "impact 1, urgency 2: given more than once")]


@pytest.mark.parametrize("priority", [0, 6, -1])
def test_a_priority_outside_1_to_5_is_refused_naming_its_cell(priority):
    cells = cells_with(i2u3=priority)
    assert refusals({"cells": cells}) == [
        (("cells", 5), f"impact 2, urgency 3: priority must be 1 to 5, not {priority}")
    ]


@pytest.mark.parametrize("priority", ["2", 2.0, True, None])
def test_a_priority_must_be_a_whole_number(priority):
    [(loc, _)] = refusals({"cells": cells_with(i3u1=priority)})
    assert loc == ("cells", 6, "priority")


@pytest.mark.parametrize(("field", "value"), [("impact", 4), ("urgency", 0), ("impact", "1")])
def test_impact_and_urgency_of_a_cell_are_1_to_3(field, value):
    cells = [dict(c) for c in DEFAULT_CELLS]
    cells[0][field] = value
    assert [loc for loc, _ in refusals({"cells": cells})] == [("cells", 0, field)]


def test_a_cell_ranking_above_one_with_more_impact_is_refused_naming_both():
    [(loc, message)] = refusals({"cells": cells_with(i3u1=1)})
    assert loc == ("cells",)
    assert message == (
        "impact 3, urgency 1: priority 1 would rank above impact 2, urgency 1 (priority 2),"
        " which has more impact"
    )


def test_a_cell_ranking_above_one_with_more_urgency_is_refused():
    [(_, message)] = refusals({"cells": cells_with(i1u2=1, i1u1=2)})
    assert "impact 1, urgency 2: priority 1 would rank above impact 1, urgency 1" in message
    assert "which has more urgency" in message


def test_equal_priorities_in_neighbouring_cells_are_allowed():
    flat = PriorityMatrix.model_validate({"cells": [{**c, "priority": 3} for c in DEFAULT_CELLS]})
    assert set(flat.as_mapping().values()) == {3}


def test_unknown_fields_are_refused():
    assert refusals({"cells": DEFAULT_CELLS, "name": "x"})[0][0] == ("name",)
    cells = [{**DEFAULT_CELLS[0], "colour": "red"}, *DEFAULT_CELLS[1:]]
    assert refusals({"cells": cells})[0][0] == ("cells", 0, "colour")


def test_a_matrix_cannot_be_changed_in_place():
    matrix = PriorityMatrix.default()
    with pytest.raises(ValidationError):
        matrix.cells = ()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        matrix.cells[0].priority = 5  # type: ignore[misc]
