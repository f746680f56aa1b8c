"""JSONL lines: parse one line strictly (UTF-8, one JSON value, no NaN/Infinity, no duplicate keys, at most 1 MB).

tables.py reads JSONL files line by line with this, naming every bad line; formats.py checks the rows.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE_BYTES = 1_000_000


class _BadLine(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadLine(f"{name} is not allowed in JSON data")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise _BadLine(f"key {dupes[0]!r} appears twice")
    return dict(pairs)


def _parse_line(raw: bytes) -> Any:
    if len(raw) > MAX_LINE_BYTES:
        raise _BadLine(f"{len(raw) / 1e6:.1f} MB long; a line may hold at most {MAX_LINE_BYTES // 1_000_000} MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
