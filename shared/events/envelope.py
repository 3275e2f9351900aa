"""CloudEvents 1.0 envelope with the platform's extension attributes.

The aggregate's version travels in our own extension `itsmversion` (an Integer): the version of
the aggregate named by `subject` after this event, 1 for its first event, gap-free. It used to
travel in `sequence`, which the CloudEvents Sequence extension defines as a lexicographically
orderable string ordering the events of a whole `source`: an unpadded number per aggregate
misled generic consumers ("10" sorts before "9"). We no longer send `sequence`; the binding still
reads it from events that carry only it (written before the change).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.ids import new_id

# CloudEvents: `source` is a URI-reference; ours are `itsm/<service>`.
SOURCE_PATTERN = r"^itsm/[a-z][a-z0-9-]*$"
# Past-tense, versioned names: itsm.<domain>.<event>.v<N>
TYPE_PATTERN = r"^itsm\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*\.v[1-9][0-9]*$"
TYPE_RE = re.compile(TYPE_PATTERN)
MAX_SUBJECT = 200
# CloudEvents 1.0 (Type System, String): the control characters U+0000-U+001F and
# U+007F-U+009F MUST NOT be used in attribute values. An event with one is not a CloudEvent.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"


class Envelope(BaseModel):
    """One event: CloudEvents attributes, our extensions, and the JSON payload as `data`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    source: str = Field(pattern=SOURCE_PATTERN)
    type: str = Field(pattern=TYPE_PATTERN)
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT, pattern=NO_CONTROL_CHARACTERS)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    tenantid: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)
    itsmversion: int = Field(ge=1, description="The subject's (aggregate's) version, gap-free.")
    correlationid: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
    causationid: str | None = Field(default=None, max_length=200, pattern=NO_CONTROL_CHARACTERS)
    actor: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _representable_in_utc(cls, value: datetime) -> datetime:
        # 0001-01-01T00:00:00+14:00 is RFC 3339 but no instant a consumer can store or compare.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is outside the range of years 1 to 9999 in UTC") from None
        return value


def new_envelope(
    *,
    source: str,
    type: str,
    subject: str,
    tenantid: str,
    itsmversion: int,
    actor: str,
    data: dict[str, Any],
    correlationid: str | None = None,
    causationid: str | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Build an envelope with a fresh id; the event is its own correlation root if none is given."""
    event_id = new_id()
    return Envelope(
        id=event_id,
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC),
        tenantid=tenantid,
        itsmversion=itsmversion,
        correlationid=correlationid or str(event_id),
        causationid=causationid,
        actor=actor,
        data=data,
    )
