"""Events of change management (ISO/IEC 20000-1 8.5.1): the contract consumers use."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.base import EventPayload, event
from shared.events.topics import CHANGE_EVENTS


@event("itsm.change.implemented.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeImplementedV1(EventPayload):
    """A change was implemented on CIs (subject: the change id).

    The incident service flags incidents on these CIs within a window after `implemented_at`.
    """

    change_id: str
    title: str
    ci_ids: list[str]
    implemented_at: datetime
    outcome: Literal["successful", "failed", "partial"] = "successful"
