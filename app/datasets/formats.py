"""Recognising a table's shape, mapping its columns, and normalising its rows to chat / prompt_completion / text.

Shapes and the fields each needs (optional ones in brackets):

    chat               messages                      OpenAI-style [{"role", "content"}, ...]
    sharegpt           conversations                 [{"from": "human"|"gpt"|"system", "value"}, ...]
    instruction        instruction, [input], output, [system]      (alpaca style)
    prompt_completion  prompt, completion
    text               text                          continued pre-training
    classification     text, label

A mapping says which column holds each field ({"prompt": "question"}); fields not mapped are read from
the column of the same name. Normalising (what the trainer sees, and what the sample inspector shows):

    instruction     -> chat: [system,] user = instruction (+ "\\n\\n" + input when input is not blank), assistant = output
    sharegpt        -> chat: human -> user, gpt -> assistant, system -> system
    classification  -> prompt_completion: prompt = text + "\\nLabel: ", completion = the label as text
                       (the trainer is causal-LM only: it learns to write the label after the prompt)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .rows import DatasetError, Rows
from .tables import Table

SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # shape -> (required fields, optional fields)
    "chat": (("messages",), ()),
    "sharegpt": (("conversations",), ()),
    "instruction": (("instruction", "output"), ("input", "system")),
    "prompt_completion": (("prompt", "completion"), ()),
    "text": (("text",), ()),
    "classification": (("text", "label"), ()),
}
NORMALISED_AS = {"chat": "chat", "sharegpt": "chat", "instruction": "chat", "prompt_completion": "prompt_completion",
                 "text": "text", "classification": "prompt_completion"}
SHAPE_TITLES = {"chat": "chat messages", "sharegpt": "ShareGPT conversations", "instruction": "instruction (alpaca)",
                "prompt_completion": "prompt/completion", "text": "plain text", "classification": "text/label classification"}
LABEL_PROMPT = "\nLabel: "
MAX_PROBLEMS = 10
CHAT_ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
# Column names that probably mean a field; a guess from these is shown as unsure, for a person to confirm.
SYNONYMS = {
    "prompt": ("question", "query", "input", "source", "context"),
    "completion": ("answer", "response", "output", "target", "reply"),
    "text": ("content", "document", "sentence", "body"),
    "label": ("labels", "class", "category", "target"),
}


@dataclass(frozen=True)
class Detection:
    """What a table looks like: the shape, the column for each field, and whether a person should confirm it."""

    shape: str | None
    mapping: dict[str, str]
    sure: bool
    reason: str


def fields_of(shape: str) -> tuple[str, ...]:
    required, optional = SHAPES[shape]
    return required + optional


def detect(columns: list[str]) -> Detection:
    """The shape of a table from its column names (exact names: sure; synonyms: a guess to confirm)."""
    lower = {c.lower(): c for c in columns}

    def exact(shape: str) -> Detection | None:
        required, optional = SHAPES[shape]
        if all(f in lower for f in required):
            mapping = {f: lower[f] for f in required + optional if f in lower}
            return Detection(shape, mapping, True, f"found the columns {', '.join(repr(mapping[f]) for f in required)}")
        return None

    for shape in ("chat", "sharegpt", "instruction", "prompt_completion", "classification", "text"):
        if found := exact(shape):
            return found
    for shape in ("prompt_completion", "classification"):
        a, b = SHAPES[shape][0]
        col_a = lower.get(a) or next((lower[s] for s in SYNONYMS.get(a, ()) if s in lower), None)
        col_b = lower.get(b) or next((lower[s] for s in SYNONYMS.get(b, ()) if s in lower and lower[s] != col_a), None)
        if col_a and col_b and col_a != col_b:
            return Detection(shape, {a: col_a, b: col_b}, False, f"guessed from the column names {col_a!r} and {col_b!r}: please check")
    if len(columns) == 1:
        return Detection("text", {"text": columns[0]}, False, f"one column, {columns[0]!r}: read as plain text, please check")
    return Detection(None, {}, False, "no known columns (messages, conversations, instruction/output, prompt/completion, text, label)")


class _BadRow(ValueError):
    pass


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _get(record: dict[str, Any], field: str, column: str, shape: str) -> Any:
    value = record.get(column)
    if column not in record or _missing(value):
        named = f"{column!r}" if column == field else f"{column!r} (the {field})"
        raise _BadRow(f"missing {named} (this file is {SHAPE_TITLES[shape]} data)")
    return value


def _text(record: dict[str, Any], field: str, column: str, shape: str, *, required: bool = True, allow_numbers: bool = False) -> str:
    if not required and (column not in record or _missing(record.get(column))):
        return ""
    value = _get(record, field, column, shape)
    if allow_numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _BadRow(f"{column!r} must be text, got {type(value).__name__}")
    return value


def _list(record: dict[str, Any], field: str, column: str, shape: str) -> list[Any]:
    value = _get(record, field, column, shape)
    if isinstance(value, str) and value.lstrip().startswith("["):  # a CSV cell holding JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _BadRow(f"{column!r} holds text that is not a JSON list ({exc.msg})") from None
    return value


def _messages(messages: Any, column: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise _BadRow(f'{column!r} must be a non-empty list of {{"role": ..., "content": ...}}')
    out = []
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
            raise _BadRow(f"message {i} needs a 'role' of {', '.join(CHAT_ROLES)}")
        if not isinstance(m.get("content"), str):
            raise _BadRow(f"message {i} ({m['role']}) needs a text 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise _BadRow("no assistant message, so nothing to learn from")
    return out


def _sharegpt(turns: Any, column: str) -> list[dict[str, str]]:
    if isinstance(turns, list) and turns and all(isinstance(t, dict) and "role" in t for t in turns):
        return _messages(turns, column)  # some ShareGPT exports already use role/content
    if not isinstance(turns, list) or not all(isinstance(t, dict) and t.get("from") in SHAREGPT_ROLES for t in turns):
        raise _BadRow(f"{column!r} entries need 'from' (human, gpt or system) and 'value'")
    return _messages([{"role": SHAREGPT_ROLES[t["from"]], "content": t.get("value")} for t in turns], column)


def normalise_record(record: dict[str, Any], shape: str, mapping: dict[str, str]) -> dict[str, Any]:
    """One record in its normalised format, or _BadRow saying what is wrong."""
    col = {f: mapping.get(f, f) for f in fields_of(shape)}
    if shape == "chat":
        return {"messages": _messages(_list(record, "messages", col["messages"], shape), col["messages"])}
    if shape == "sharegpt":
        return {"messages": _sharegpt(_list(record, "conversations", col["conversations"], shape), col["conversations"])}
    if shape == "instruction":
        instruction = _text(record, "instruction", col["instruction"], shape)
        extra = _text(record, "input", col["input"], shape, required=False)
        output = _text(record, "output", col["output"], shape)
        system = _text(record, "system", col["system"], shape, required=False)
        if not output.strip():
            raise _BadRow(f"{col['output']!r} is empty, so nothing to learn from")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        head = [{"role": "system", "content": system}] if system.strip() else []
        return {"messages": [*head, {"role": "user", "content": user}, {"role": "assistant", "content": output}]}
    if shape == "classification":
        text = _text(record, "text", col["text"], shape)
        label = _text(record, "label", col["label"], shape, allow_numbers=True)
        if not label.strip():
            raise _BadRow(f"{col['label']!r} is empty, so nothing to learn from")
        return {"prompt": text + LABEL_PROMPT, "completion": label}
    keys = ("prompt", "completion") if shape == "prompt_completion" else ("text",)
    missing = [k for k in keys if col[k] not in record or _missing(record.get(col[k]))]
    if len(missing) > 1:
        raise _BadRow(f"missing {' and '.join(repr(col[k]) for k in missing)} (this file is {SHAPE_TITLES[shape]} data)")
    values = {k: _text(record, k, col[k], shape) for k in keys}
    if not values[keys[-1]].strip():
        raise _BadRow(f"{col[keys[-1]]!r} is empty, so nothing to learn from")
    return values


def check_mapping(shape: str, mapping: dict[str, str], columns: list[str], name: str, whole_columns: bool = True) -> None:
    """DatasetError when the mapping names fields the shape lacks or columns the table lacks, or a required field has no column."""
    if shape not in SHAPES:
        raise DatasetError(f"{shape!r} is not a dataset format.", hint=f"Pick one of {', '.join(SHAPES)}.")
    fields = fields_of(shape)
    unknown = [f for f in mapping if f not in fields]
    if unknown:
        raise DatasetError(f"The mapping for {name} names {unknown[0]!r}, which {SHAPE_TITLES[shape]} data does not have.",
                           hint=f"Fields of this format: {', '.join(fields)}.")
    absent = [c for c in mapping.values() if c not in columns]
    if absent:
        raise DatasetError(f"The dataset {name} has no column {absent[0]!r} (columns: {', '.join(columns)}).",
                           hint="Pick one of the dataset's columns for each field.")
    required, _ = SHAPES[shape]
    unmapped = [f for f in required if mapping.get(f, f) not in columns]
    if unmapped and columns and whole_columns:
        raise DatasetError(
            f"The dataset {name} has no column for {unmapped[0]!r}, which {SHAPE_TITLES[shape]} data needs (columns: {', '.join(columns)}).",
            hint=f"Map a column to {unmapped[0]!r}, or pick the format that matches the file.",
        )


def normalise(table: Table, shape: str = "auto", mapping: dict[str, str] | None = None) -> Rows:
    """The table's rows checked and normalised; DatasetError lists every unreadable or unusable line/row."""
    return check_rows(table, shape, mapping)[0]


def check_rows(table: Table, shape: str = "auto", mapping: dict[str, str] | None = None, start: int = 0,
               stop: int | None = None) -> tuple[Rows, int]:
    """normalise's checks over every row, keeping only rows start..stop (all when stop is None), and how many rows there are.

    A table from scan_table is streamed, so checking a big file in the web process keeps no copy of it."""
    mapping = dict(mapping or {})
    detected = detect(table.columns)
    notes: list[str] = []
    if not table.size and not table.problems:
        raise DatasetError(f"The dataset {table.name} has no rows.", hint="Upload a file with one example per line or row.")
    if shape == "auto":
        if detected.shape is None or (not detected.sure and not mapping):
            first = table.first_number or 1
            if not table.size and table.problems:
                raise_problems(table, [])
            raise DatasetError(
                f"The dataset {table.name}: {table.unit} {first}: cannot tell the format: expected 'messages', 'prompt' and "
                f"'completion', or 'text' (columns: {', '.join(table.columns) or 'none'}); {detected.reason}.",
                hint="Pick the format and map its fields to the file's columns.",
            )
        shape = detected.shape
        mapping = mapping or detected.mapping
    elif shape in NORMALISED_AS and not mapping and detected.shape == shape and detected.sure:
        mapping = detected.mapping
    if table.size:  # JSONL lines may each lack a key: those are named per line below, unless a mapping was given
        check_mapping(shape, mapping, table.columns, table.name, whole_columns=table.kind in ("csv", "parquet") or bool(mapping))
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    count = 0
    problems = list(table.problems)
    for number, record in table.iter_records():
        try:
            row = normalise_record(record, shape, mapping)
        except _BadRow as exc:
            problems.append((number, str(exc)))
            continue
        if start <= count and (stop is None or count < stop):
            rows.append(row)
            lines.append(number)
        count += 1
    if problems:
        raise_problems(table, problems)
    if not count:
        raise DatasetError(f"The dataset {table.name} has no rows.", hint="Upload a file with one example per line or row.")
    used = {mapping.get(f, f) for f in fields_of(shape)}
    ignored = [c for c in table.columns if c not in used]
    if ignored:
        notes.append(f"columns not used: {', '.join(ignored)}")
    if shape == "classification":
        notes.append("classification is trained as text generation: prompt = text + '\\nLabel: ', completion = the label")
    return Rows(source=table.name, format=NORMALISED_AS[shape], rows=rows, lines=lines, detected=shape, notes=notes), count


def raise_problems(table: Table, problems: list[tuple[int, str]] | None = None) -> None:
    """DatasetError listing the first MAX_PROBLEMS bad lines/rows (the table's own unless given)."""
    problems = sorted(problems or table.problems)
    shown = [f"{table.unit} {n}: {why}" for n, why in problems[:MAX_PROBLEMS]]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    listing = "\n".join(f"  {p}" for p in shown)
    raise DatasetError(
        f"The dataset {table.name} has {len(problems)} bad {table.unit}(s):\n{listing}{more}",
        hint="Fix the lines or rows listed and bring the file in again. Each row needs the fields of its format, e.g. "
        '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} or '
        '{"prompt": "...", "completion": "..."}.',
        problems=shown,
    )
