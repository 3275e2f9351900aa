"""Versions as ETags: what a write sends back in `If-Match` to prove it read the latest."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header

from shared.http.problems import HttpProblem

# The request header of every versioned write.
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='The ETag you read, e.g. "3": refused (412) if stale.'),
]

_IF_MATCH = re.compile(r'^(W/)?"(\d{1,9})"$')


def etag(version: int) -> str:
    """The ETag of a version (what If-Match must repeat)."""
    return f'"{version}"'


def if_match_version(if_match: str | None, *, required: bool) -> int | None:
    """The version an If-Match header names; 428 when required and missing, 400 if malformed,
    412 for a weak ETag."""
    if if_match is None:
        if not required:
            return None
        raise HttpProblem(
            428,
            "Precondition Required",
            "send If-Match with the ETag of the version you read",
            errors=[{"in": "header", "field": "If-Match", "detail": "required"}],
        )
    match = _IF_MATCH.match(if_match.strip())
    if not match:
        raise HttpProblem(
            400,
            "Bad Request",
            'If-Match must be an ETag of this API, e.g. "3"',
            errors=[{"in": "header", "field": "If-Match", "detail": "not an ETag"}],
        )
    if match.group(1):
        # If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches, so the write
        # must not apply. Our ETags are strong; a weak one comes from a cache or a proxy that
        # transformed the representation the client read.
        raise HttpProblem(
            412,
            "Precondition Failed",
            'a weak ETag never matches If-Match: send the strong ETag you read, e.g. "3"',
            errors=[{"in": "header", "field": "If-Match", "detail": "weak ETag"}],
        )
    return int(match.group(2))


def stale_version(what: str, current: int, expected: int) -> HttpProblem:
    """The 412 for a write that read an older version; carries the current ETag."""
    return HttpProblem(
        412,
        "Precondition Failed",
        f"{what} is at version {current}, not {expected}: read it again and retry",
        headers={"ETag": etag(current)},
    )
