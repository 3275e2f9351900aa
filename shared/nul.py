"""NUL (U+0000): valid in JSON and in Python strings, but PostgreSQL `text` cannot store it.

Input holding one is refused where it enters (HTTP requests: `shared/http/guards.py`; import
rows: the config service's import parser), naming where it was found.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REASON = "must not contain NUL (U+0000)"


def nul_paths(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths (FastAPI's error `loc` style) of the strings, and keys, that hold NUL."""
    if isinstance(value, str):
        return [".".join(path) or "body"] if NUL in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                found.append(".".join([*path, key.replace(NUL, "\\u0000")]))
            else:
                found += nul_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += nul_paths(item, (*path, str(index)))
    return found
