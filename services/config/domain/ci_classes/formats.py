"""The string formats a class schema may name, each checked by our own code."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType
from urllib.parse import urlsplit

from jsonschema import FormatChecker

# Our own checkers, so that what is checked does not depend on which optional packages happen
# to be installed: without them jsonschema silently passes `date-time` and `uri`.

FORMAT_CHECKER = FormatChecker(formats=())

_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.][^@\s]*$")


@FORMAT_CHECKER.checks("ipv4")
def _is_ipv4(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("ipv6")
def _is_ipv6(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return address.scope_id is None  # a zone (`%eth0`) only means something on one host


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if not match:
        return False
    day, time, _, offset = match.groups()
    try:  # the ranges of every part (any number of fraction digits is fine: left out here)
        datetime.fromisoformat(f"{day}T{time}{'+00:00' if offset in 'Zz' else offset}")
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("date")
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@FORMAT_CHECKER.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _URI.match(value):
        return False
    try:
        urlsplit(value)
    except ValueError:  # e.g. an unbalanced `[` in the host
        return False
    return True


@FORMAT_CHECKER.checks("uuid")
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(_UUID.match(value))


FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "date": "a date (YYYY-MM-DD)",
        "date-time": "an RFC 3339 date-time such as 2025-01-31T09:00:00Z",
        "email": "an email address",
        "ipv4": "an IPv4 address",
        "ipv6": "an IPv6 address",
        "uri": "an absolute URI",
        "uuid": "a UUID",
    }
)
assert set(FORMATS) == set(FORMAT_CHECKER.checkers)
