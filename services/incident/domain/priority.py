"""Priority from impact and urgency: the default ITIL 3×3 matrix and tenants' own matrices.

Impact and urgency are 1 (high) to 3 (low); priority is P1 (highest) to P5. `priority_of` is
the default matrix (priority = impact + urgency - 1); `PriorityMatrix` is a matrix a tenant
configures, in this JSON shape (one cell per impact × urgency, any order; stored and returned
sorted by impact, then urgency):

    {"cells": [{"impact": 1, "urgency": 1, "priority": 1},
               {"impact": 1, "urgency": 2, "priority": 2},
               ...
               {"impact": 3, "urgency": 3, "priority": 5}]}

A list of cells rather than a nested mapping because JSON object keys are strings ("1") and a
flat list is what a table editor sends and a spreadsheet imports. The rules:

- impact, urgency and priority are whole numbers (not strings, floats or booleans), impact and
  urgency 1 to 3, priority 1 to 5 (a priority out of range is refused at `cells.<i>` naming
  the cell, "impact 2, urgency 3: priority must be 1 to 5, not 7"; a wrong type at
  `cells.<i>.<field>`);
- all 9 cells are required, each once (refused at `cells`: "impact 2, urgency 3: missing");
- no cell ranks above its neighbour with more impact (same urgency) or more urgency (same
  impact): lowering impact or urgency never raises the priority. A matrix that did would be a
  slip of the keyboard, not a policy (refused at `cells`, naming both cells).

Not every priority has to be used (a tenant may reserve P1 for flagged major incidents).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

Level = Literal[1, 2, 3]  # 1 = high, 2 = medium, 3 = low
LEVELS: tuple[int, ...] = (1, 2, 3)
PRIORITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# (impact, urgency) -> priority.
DEFAULT_MATRIX: MappingProxyType[tuple[int, int], int] = MappingProxyType(
    {(impact, urgency): impact + urgency - 1 for impact in LEVELS for urgency in LEVELS}
)


def priority_of(impact: int, urgency: int) -> int:
    """P1..P5 for an impact and an urgency, each 1 (high) to 3 (low), on the default matrix."""
    try:
        return DEFAULT_MATRIX[(impact, urgency)]
    except KeyError:
        raise ValueError(
            f"impact and urgency must be 1, 2 or 3, not {impact} and {urgency}"
        ) from None


def _cell(impact: int, urgency: int) -> str:
    return f"impact {impact}, urgency {urgency}"


LevelField = Annotated[int, Field(strict=True, ge=1, le=3)]


class PriorityCell(BaseModel):
    """The priority of one impact × urgency combination."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    impact: LevelField = Field(description="1 (high) to 3 (low).", examples=[2])
    urgency: LevelField = Field(description="1 (high) to 3 (low).", examples=[3])
    # Range checked below so that the refusal names the cell.
    priority: int = Field(
        strict=True,
        description="1 (highest) to 5 (lowest).",
        examples=[4],
        json_schema_extra={"minimum": 1, "maximum": 5},
    )

    @model_validator(mode="after")
    def _priority_is_p1_to_p5(self) -> Self:
        if self.priority not in PRIORITIES:
            raise PydanticCustomError(
                "priority_range",
                "{cell}: priority must be 1 to 5, not {priority}",
                {"cell": _cell(self.impact, self.urgency), "priority": self.priority},
            )
        return self


class PriorityMatrix(BaseModel):
    """A tenant's impact × urgency → priority matrix: all 9 cells, sorted by impact, urgency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cells: tuple[PriorityCell, ...] = Field(
        description="One cell per impact × urgency (9 in all), in any order.",
        examples=[
            [
                {"impact": i, "urgency": u, "priority": p}
                for (i, u), p in sorted(DEFAULT_MATRIX.items())
            ]
        ],
    )

    @field_validator("cells")
    @classmethod
    def _every_cell_once_and_monotonic(
        cls, cells: tuple[PriorityCell, ...]
    ) -> tuple[PriorityCell, ...]:
        seen: dict[tuple[int, int], int] = {}
        problems: list[str] = []
        for cell in cells:
            key = (cell.impact, cell.urgency)
            if key in seen:
                problems.append(f"{_cell(*key)}: given more than once")
            seen.setdefault(key, cell.priority)
        problems += [f"{_cell(*key)}: missing" for key in sorted(DEFAULT_MATRIX) if key not in seen]
        if not problems:
            problems += _rank_inversions(seen)
        if problems:
            raise PydanticCustomError(
                "priority_matrix", "{problems}", {"problems": "; ".join(problems)}
            )
        return tuple(sorted(cells, key=lambda cell: (cell.impact, cell.urgency)))

    @classmethod
    def default(cls) -> PriorityMatrix:
        """The ITIL 3×3 matrix: priority = impact + urgency - 1."""
        return cls.from_mapping(DEFAULT_MATRIX)

    @classmethod
    def from_mapping(cls, priorities: Mapping[tuple[int, int], int]) -> PriorityMatrix:
        """A matrix from `{(impact, urgency): priority}`, validated like the JSON shape."""
        return cls.model_validate(
            {
                "cells": [
                    {"impact": impact, "urgency": urgency, "priority": priority}
                    for (impact, urgency), priority in priorities.items()
                ]
            }
        )

    def as_mapping(self) -> Mapping[tuple[int, int], int]:
        """The matrix as `{(impact, urgency): priority}`, read-only."""
        return MappingProxyType({(c.impact, c.urgency): c.priority for c in self.cells})

    def priority(self, impact: int, urgency: int) -> int:
        """P1..P5 for an impact and an urgency, each 1 (high) to 3 (low), on this matrix."""
        try:
            return self.as_mapping()[(impact, urgency)]
        except KeyError:
            raise ValueError(
                f"impact and urgency must be 1, 2 or 3, not {impact} and {urgency}"
            ) from None


def _rank_inversions(priorities: Mapping[tuple[int, int], int]) -> list[str]:
    """Cells that rank above their neighbour with more impact or more urgency."""
    problems = []
    for (impact, urgency), priority in sorted(priorities.items()):
        for more, axis in (((impact - 1, urgency), "impact"), ((impact, urgency - 1), "urgency")):
            if more in priorities and priorities[more] > priority:
                problems.append(
                    f"{_cell(impact, urgency)}: priority {priority} would rank above"
                    f" {_cell(*more)} (priority {priorities[more]}), which has more {axis}"
                )
    return problems
