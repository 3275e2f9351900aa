"""Whether a `pattern` of a class schema is safe to run: valid in Python (which runs it) and in
ECMA-262 (which JSON Schema specifies), and free of the shape that makes backtracking explode,
an ambiguous group repeated without bound. A heuristic: it catches the classic shapes, it
proves nothing.
"""

from __future__ import annotations

import re

MAX_PATTERN_LENGTH = 500  # a limit on tenant schemas (the others: schema_rules)

_QUANTIFIER = re.compile(r"\*|\+|\?|\{(\d*)(,(\d*))?\}")
_ONCE, _VARIES, _UNBOUNDED = 0, 1, 2  # how many times a quantifier lets its atom match


def regex_problems(pattern: str) -> list[str]:
    """Why a `pattern` is refused: not valid in Python or ECMA-262, or prone to backtracking."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return [f"is longer than {MAX_PATTERN_LENGTH} characters"]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"is not a valid regular expression: {exc}"]
    python_only, nested = _scan_regex(pattern)
    problems = []
    if python_only:
        problems.append(f"uses {python_only}, which ECMA-262 regular expressions do not have")
    if nested:
        problems.append(
            "repeats without bound a group that can match the same text in several ways, "
            "e.g. (a+)+, which can take exponential time to fail"
        )
    return problems


class _Group:
    """What the current alternative of an open group holds, while `_scan_regex` reads it."""

    def __init__(self, lookaround: bool = False) -> None:
        self.lookaround = lookaround
        self.fixed = False  # an atom that must match exactly once, e.g. the `-` of (-[a-z]+)
        self.varies = False  # an atom that may match a varying number of times
        self.ambiguous = False  # some alternative holds only varying atoms, e.g. (a+) or (\s*\w+)

    def atom(self, times: int, ambiguous_inside: bool = False) -> None:
        if times == _ONCE and not ambiguous_inside:
            self.fixed = True
        else:
            self.varies = True

    def end_alternative(self) -> None:
        self.ambiguous = self.ambiguous or (self.varies and not self.fixed)
        self.fixed = self.varies = False


def _scan_regex(pattern: str) -> tuple[str | None, bool]:
    """(Python-only syntax found, ambiguous group repeated without bound found).

    For a pattern that compiles. A heuristic, not a proof of linear time: it refuses the
    classic shapes (a+)+, (a*)*, (\\s*\\w+)*, ([a-z]+|[0-9]+)+ and lets (-[a-z]+)* through,
    because there every repetition must start with a `-`.
    """
    python_only: str | None = None
    groups = [_Group()]
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped in ("A", "Z"):
                python_only = python_only or f"\\{escaped}"
            i += 2
            if escaped in ("A", "Z", "b", "B"):  # zero-width
                continue
            times, i = _quantifier_at(pattern, i)
            groups[-1].atom(times)
        elif char == "[":
            times, i = _quantifier_at(pattern, _end_of_class(pattern, i))
            groups[-1].atom(times)
        elif char == "(":
            lookaround = False
            if pattern.startswith("(?", i):
                flag = pattern[i + 2 : i + 3]
                if flag in ("P", "#") or (flag and flag in "aiLmsux"):
                    python_only = python_only or f"the group syntax (?{flag}"
                lookaround = flag in ("=", "!") or pattern[i + 2 : i + 4] in ("<=", "<!")
                i += 2
            else:
                i += 1
            groups.append(_Group(lookaround))
        elif char == ")" and len(groups) > 1:
            group = groups.pop()
            group.end_alternative()
            times, i = _quantifier_at(pattern, i + 1)
            if times == _UNBOUNDED and group.ambiguous:
                return python_only, True
            if not group.lookaround:
                groups[-1].atom(times, group.ambiguous)
        elif char == "|":
            groups[-1].end_alternative()
            i += 1
        elif char in "^$":
            i += 1
        else:
            times, i = _quantifier_at(pattern, i + 1)
            groups[-1].atom(times)
    return python_only, False


def _quantifier_at(pattern: str, i: int) -> tuple[int, int]:
    """How often the quantifier at `i` lets its atom match, and the index after it."""
    match = _QUANTIFIER.match(pattern, i)
    if not match:
        return _ONCE, i
    text, least, comma, most = match.group(0), match.group(1), match.group(2), match.group(3)
    if text in ("*", "+") or (comma is not None and not most):
        times = _UNBOUNDED
    elif text == "?" or (comma is not None and most != least):
        times = _VARIES
    else:
        times = _ONCE  # {n}, {n,n}
    end = match.end()
    if pattern[end : end + 1] in ("?", "+"):  # lazy or possessive
        end += 1
    return times, end


def _end_of_class(pattern: str, i: int) -> int:
    """The index after the character class that opens at `i`."""
    i += 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":  # a leading `]` is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
