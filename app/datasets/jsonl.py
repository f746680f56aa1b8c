"""JSONL training data: parse every line and check it against its format before any model is loaded.

A bad file fails in a second with every bad line named (up to MAX_PROBLEMS of them), not after a model
download. Formats, one per file:
    chat               {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
                       (ShareGPT's {"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]} too)
    prompt_completion  {"prompt": "...", "completion": "..."}
    text               {"text": "..."}

Torch-free: the web process checks uploads with it and the worker reads training data with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .rows import DEMO_DATASET_FILE, DatasetError, Rows

MAX_PROBLEMS = 10  # bad lines listed in one error; the rest are counted
MAX_LINE_BYTES = 1_000_000
CHAT_ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
FORMAT_KEYS = {"chat": "'messages'", "prompt_completion": "'prompt' and 'completion'", "text": "'text'"}


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
        raise _BadLine(f"longer than {MAX_LINE_BYTES // 1_000_000} MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def detect_format(row: dict[str, Any]) -> str | None:
    if "messages" in row or "conversations" in row:
        return "chat"
    if "prompt" in row or "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return None


def _chat_row(row: dict[str, Any]) -> dict[str, Any]:
    if "messages" not in row and "conversations" not in row:
        raise _BadLine("missing 'messages' (this file is chat data)")
    if "messages" not in row and isinstance(row.get("conversations"), list):  # ShareGPT
        turns = row["conversations"]
        if not all(isinstance(t, dict) and t.get("from") in SHAREGPT_ROLES for t in turns):
            raise _BadLine("'conversations' entries need 'from' (human, gpt or system) and 'value'")
        row = {"messages": [{"role": SHAREGPT_ROLES[t["from"]], "content": t.get("value")} for t in turns]}
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadLine('\'messages\' must be a non-empty list of {"role": ..., "content": ...}')
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
            raise _BadLine(f"message {i} needs a 'role' of {', '.join(CHAT_ROLES)}")
        if not isinstance(m.get("content"), str):
            raise _BadLine(f"message {i} ({m['role']}) needs a text 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise _BadLine("no assistant message, so nothing to learn from")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def _check_row(row: Any, fmt: str) -> dict[str, Any]:
    """The row normalised to `fmt`'s keys, or _BadLine saying what is wrong with it."""
    if not isinstance(row, dict):
        raise _BadLine(f"expected a JSON object, got {type(row).__name__}")
    if fmt == "chat":
        return _chat_row(row)
    keys = ("prompt", "completion") if fmt == "prompt_completion" else ("text",)
    missing = [k for k in keys if k not in row]
    if missing:
        raise _BadLine(f"missing {' and '.join(repr(k) for k in missing)} (this file is {fmt.replace('_', '/')} data)")
    for k in keys:
        if not isinstance(row[k], str):
            raise _BadLine(f"{k!r} must be text, got {type(row[k]).__name__}")
    if not row[keys[-1]].strip():
        raise _BadLine(f"{keys[-1]!r} is empty, so nothing to learn from")
    return {k: row[k] for k in keys}


def read_rows(source: str, path: str | None, fmt: str = "auto") -> Rows:
    """Read and check a dataset ('demo' or a JSONL path); DatasetError lists the bad lines."""
    file = DEMO_DATASET_FILE if source == "demo" else Path(path or "")
    name = "the demo dataset" if source == "demo" else str(file)
    if not file.is_file():
        raise DatasetError(
            f"The dataset file {name} does not exist on the worker.", hint="Upload the file again or fix its path."
        )
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    problems: list[str] = []
    bad = 0
    with file.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw  # a UTF-8 byte-order mark
            if not raw.strip():
                continue
            try:
                row = _parse_line(raw.strip())
                if fmt == "auto":
                    detected = detect_format(row) if isinstance(row, dict) else None
                    if detected is None:
                        raise _BadLine("cannot tell the format: expected 'messages', 'prompt' and 'completion', or 'text'")
                    fmt = detected
                rows.append(_check_row(row, fmt))
                lines.append(number)
            except _BadLine as exc:
                bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"line {number}: {exc}")
    if bad:
        more = f"\n  ... and {bad - len(problems)} more" if bad > len(problems) else ""
        listing = "\n".join(f"  {p}" for p in problems)
        raise DatasetError(
            f"The dataset {name} has {bad} bad line(s):\n{listing}{more}",
            hint="Each line must be one JSON object, e.g. "
            + '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}. '
            "Fix the lines listed and upload the file again.",
        )
    if not rows:
        raise DatasetError(f"The dataset {name} has no rows.", hint="Upload a JSONL file with one example per line.")
    return Rows(source=name, format=fmt, rows=rows, lines=lines)
