"""Where each key of a TOML settings file is written: tomllib gives values, not positions, and
an error message without its line sends the user hunting."""

from __future__ import annotations

import json
import re
from typing import Final

KeyPath = tuple[str, ...]

_KEY_PART: Final = r'[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
_KEY: Final = rf"\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*"
_HEADER = re.compile(rf"\s*\[\[?{_KEY}\]")
_KEYVAL = re.compile(rf"{_KEY}=")
_INLINE_KEY = re.compile(rf"[{{,]{_KEY}=")


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line each key path (and each prefix of it) is first written on.

    tomllib gives no positions, and the file has already parsed: a line-by-line search that
    knows table headers, dotted and quoted keys, one-line inline tables and multi-line strings
    (whose content it skips) places every key a settings file uses. A key it misses is reported
    without a line, never wrongly."""
    found: dict[KeyPath, int] = {}
    table: KeyPath = ()
    in_string: str | None = None

    def record(path: KeyPath, line: int) -> None:
        for n in range(1, len(path) + 1):
            found.setdefault(path[:n], line)

    for n, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2:
                in_string = None
            continue
        if (m := _HEADER.match(line)) is not None:
            table = _key_path(m.group(1))
            record(table, n)
        elif (m := _KEYVAL.match(line)) is not None:
            path = table + _key_path(m.group(1))
            record(path, n)
            rest = line[m.end():]
            for inner in _INLINE_KEY.finditer(rest):
                record(path + _key_path(inner.group(1)), n)
            in_string = next((q for q in ('"""', "'''") if rest.count(q) % 2), None)
    return found


def _key_path(text: str) -> KeyPath:
    parts = re.findall(_KEY_PART, text)
    return tuple(json.loads(p) if p.startswith('"') else p.strip("'") for p in parts)
