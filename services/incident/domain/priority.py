"""Priority from impact and urgency (the default ITIL 3×3 matrix, P1 highest)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

Level = Literal[1, 2, 3]  # 1 = high, 2 = medium, 3 = low

# (impact, urgency) -> priority. Tenants get their own matrices in the incident-management issue.
DEFAULT_MATRIX: MappingProxyType[tuple[int, int], int] = MappingProxyType(
    {(impact, urgency): impact + urgency - 1 for impact in (1, 2, 3) for urgency in (1, 2, 3)}
)


def priority_of(impact: int, urgency: int) -> int:
    """P1..P5 for an impact and an urgency, each 1 (high) to 3 (low)."""
    try:
        return DEFAULT_MATRIX[(impact, urgency)]
    except KeyError:
        raise ValueError(
            f"impact and urgency must be 1, 2 or 3, not {impact} and {urgency}"
        ) from None
