import pytest

from services.incident.domain.priority import DEFAULT_MATRIX, priority_of


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
