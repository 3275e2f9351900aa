"""Customer-satisfaction surveys (pure): the survey of a resolved record, its link's token, and
its one answer.

The link carries a token that is the survey's only credential (no login): `<payload>.<mac>`,
both URL-safe base64 without padding, where the payload is compact JSON naming the tenant
(`t`), the record kind (`k`), the record id (`r`) and the expiry in Unix seconds (`e`), and the
MAC is HMAC-SHA256 over the versioned payload with the service's survey key (never the
access-token key). Nothing about the token is stored: a token is valid when its MAC verifies
and it points at a survey whose expiry it repeats. A token that does not verify is refused
without saying which part was wrong.

One survey per record, ever: a reopened record that is resolved again keeps its first survey
(answered or not, expired or not), so a caller is never asked twice about one record and the
KPIs count each record once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, cast

from shared.auth.tokens import TENANT_ID_PATTERN
from shared.errors import Conflict, FieldError, Gone, NotFound, ValidationFailed
from shared.events.catalogue import RecordKind, SurveyAnsweredV1, SurveySentV1

# Tokens longer than this are refused before any work (a real one is about 150 characters).
MAX_TOKEN_LENGTH: Final = 512
# The shortest survey key accepted: 32 characters of a random secret.
MIN_KEY_LENGTH: Final = 32
MAX_COMMENT: Final = 2000
# Domain separation: a MAC made for anything else with the same key never verifies here.
_CONTEXT: Final = b"itsm-survey-v1."
_TENANT: Final = re.compile(TENANT_ID_PATTERN)
_PART: Final = re.compile(r"^[A-Za-z0-9_-]+$")
KINDS: Final[tuple[RecordKind, ...]] = ("incident", "request")


@dataclass(frozen=True)
class SurveyToken:
    """What a verified token names."""

    tenant_id: str
    record: RecordKind
    record_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True)
class Survey:
    """A survey as stored: who was served, by whom, until when, and the answer once given."""

    tenant_id: str
    record: RecordKind
    record_id: uuid.UUID
    sent_at: datetime
    expires_at: datetime
    caller: str | None = None
    services: tuple[str, ...] = ()
    assignment_group: str | None = None
    assignee: str | None = None
    score: int | None = None
    comment: str | None = None
    answered_at: datetime | None = None

    @property
    def subject(self) -> str:
        """The events' subject: `survey/<record id>`."""
        return f"survey/{self.record_id}"

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def expired(self, now: datetime) -> bool:
        """Whether the survey no longer takes an answer at `now`."""
        return now >= self.expires_at

    def token_claims(self) -> SurveyToken:
        """What this survey's token names."""
        return SurveyToken(self.tenant_id, self.record, self.record_id, self.expires_at)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> bytes:
    return hmac.new(key.encode(), _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def sign(claims: SurveyToken, key: str) -> str:
    """The link's token for these claims, signed with the survey key."""
    body = {
        "t": claims.tenant_id,
        "k": claims.record,
        "r": str(claims.record_id),
        "e": int(claims.expires_at.timestamp()),
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify(token: str, key: str) -> SurveyToken | None:
    """The claims of a token whose MAC verifies under `key`; None for anything else (malformed,
    tampered, signed with another key), without saying which."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload, mac = token.split(".")
    if not (_PART.match(payload) and _PART.match(mac)):
        return None
    try:
        presented = _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(presented, _mac(key, payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
        tenant, kind, record_id, expiry = body["t"], body["k"], body["r"], body["e"]
        if not (isinstance(tenant, str) and _TENANT.match(tenant)) or kind not in KINDS:
            return None
        if not isinstance(expiry, int) or isinstance(expiry, bool):
            return None
        return SurveyToken(
            tenant,
            cast(RecordKind, kind),
            uuid.UUID(record_id),
            datetime.fromtimestamp(expiry, UTC),
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, OSError):
        # A MAC that verifies over a payload we never made: the key has leaked or been reused.
        return None


def usable_key(key: str | None) -> str | None:
    """The survey key if it is long enough to sign with; None otherwise (no links then)."""
    return key if key is not None and len(key) >= MIN_KEY_LENGTH else None


def offer(
    *,
    tenant_id: str,
    record: RecordKind,
    record_id: uuid.UUID,
    now: datetime,
    days: int,
    caller: str | None,
    services: tuple[str, ...],
    assignment_group: str | None,
    assignee: str | None,
) -> tuple[Survey, SurveySentV1]:
    """A new survey of a resolved (or fulfilled) record, open for `days` from `now` (whole
    seconds: the token carries its expiry in seconds), and its sent event."""
    sent_at = now
    expires_at = (now + timedelta(days=days)).replace(microsecond=0)
    survey = Survey(
        tenant_id=tenant_id,
        record=record,
        record_id=record_id,
        sent_at=sent_at,
        expires_at=expires_at,
        caller=caller,
        services=services,
        assignment_group=assignment_group,
        assignee=assignee,
    )
    event = SurveySentV1(
        record=record,
        record_id=str(record_id),
        caller=caller,
        services=list(services),
        assignment_group=assignment_group,
        assignee=assignee,
        expires_at=expires_at,
    )
    return survey, event


def no_survey() -> NotFound:
    """The one refusal of a token that does not lead to a survey, whatever was wrong."""
    return NotFound("survey", "at this address")


def check_answer(score: int, comment: str) -> tuple[int, str]:
    """A score from 1 to 5 and a comment of at most 2000 characters (422 naming the field)."""
    problems = []
    if isinstance(score, bool) or not 1 <= score <= 5:
        problems.append(FieldError("score", "a whole number from 1 to 5"))
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        problems.append(FieldError("comment", f"at most {MAX_COMMENT} characters"))
    if problems:
        raise ValidationFailed(problems)
    return score, comment


def answer(
    survey: Survey, claims: SurveyToken, score: int, comment: str, *, now: datetime
) -> tuple[Survey, SurveyAnsweredV1]:
    """The survey answered: `NotFound` when the token is not this survey's (an older expiry),
    `Gone` (410) once expired, `Conflict` (409) when already answered."""
    if survey.token_claims() != claims:
        raise no_survey()
    if survey.expired(now):
        raise Gone("the survey has expired", extensions={"expired_at": _iso(survey.expires_at)})
    if survey.answered:
        raise Conflict("the survey has already been answered")
    score, comment = check_answer(score, comment)
    answered = replace(survey, score=score, comment=comment, answered_at=now)
    event = SurveyAnsweredV1(
        record=survey.record,
        record_id=str(survey.record_id),
        score=score,
        comment=comment,
        services=list(survey.services),
        assignment_group=survey.assignment_group,
        assignee=survey.assignee,
    )
    return answered, event


def _iso(at: datetime) -> str:
    return at.isoformat()


AnswerState = Literal["open", "answered", "expired"]


def state_of(survey: Survey, now: datetime) -> AnswerState:
    """Open (takes an answer), answered, or expired unanswered."""
    if survey.answered:
        return "answered"
    return "expired" if survey.expired(now) else "open"
