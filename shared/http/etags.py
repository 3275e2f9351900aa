"""Versions as ETags: what a write sends back in `If-Match` to prove it read the latest."""

from __future__ import annotations

import re

from shared.http.problems import Problem

_IF_MATCH = re.compile(r'^(?:W/)?"(\d{1,9})"$')


def etag(version: int) -> str:
    """The ETag of a version (what If-Match must repeat)."""
    return f'"{version}"'


def if_match_version(if_match: str | None, *, required: bool) -> int | None:
    """The version an If-Match header names; 428 when required and missing, 400 if malformed."""
    if if_match is None:
        if not required:
            return None
        raise Problem(
            428,
            "Precondition Required",
            "send If-Match with the ETag of the version you read",
            errors=[{"in": "header", "field": "If-Match", "detail": "required"}],
        )
    match = _IF_MATCH.match(if_match.strip())
    if not match:
        raise Problem(
            400,
            "Bad Request",
            'If-Match must be an ETag of this API, e.g. "3"',
            errors=[{"in": "header", "field": "If-Match", "detail": "not an ETag"}],
        )
    return int(match.group(1))
