"""Reading a dataset file into plain records (one dict per row), naming every line or row that cannot be read.

Nothing here knows about training formats: that is formats.py. What is checked here is the file itself:
UTF-8 text, valid JSON objects, a CSV row with as many fields as the header, cells JSON can hold (no
bytes), and no field over MAX_FIELD_BYTES. Lines of JSONL/CSV files are counted from 1 as an editor
shows them; JSON arrays and Parquet tables have rows counted from 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsonl import MAX_LINE_BYTES, _BadLine, _parse_line
from .rows import DatasetError
from .sniff import file_kind

MAX_FIELD_BYTES = 1_000_000
BOM = b"\xef\xbb\xbf"


@dataclass
class Table:
    """The raw rows of one file: records keyed by column, and where each came from."""

    name: str
    kind: str  # jsonl | json | csv | parquet
    unit: str  # "line" or "row": how numbers are named in messages
    columns: list[str]
    records: list[dict[str, Any]]
    numbers: list[int]
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line/row, what is wrong)


def _check_cell(column: str, value: Any) -> str | None:
    """Why a cell cannot be used (None when fine)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"column {column!r} holds binary data, not text"
    if isinstance(value, float) and not math.isfinite(value):
        return None  # pandas/pyarrow write missing numbers as NaN; formats.py calls it missing
    if isinstance(value, str) and len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8")) > MAX_FIELD_BYTES:
        return f"column {column!r} is {len(value.encode('utf-8')) / 1e6:.1f} MB; one field may hold at most {MAX_FIELD_BYTES // 1_000_000} MB"
    if isinstance(value, list):
        for item in value:
            if (why := _check_cell(column, item)) is not None:
                return why
    if isinstance(value, dict):
        for item in value.values():
            if (why := _check_cell(column, item)) is not None:
                return why
    return None


def _add(table: Table, number: int, record: Any) -> None:
    if not isinstance(record, dict):
        table.problems.append((number, f"expected a JSON object, got {type(record).__name__}"))
        return
    for column, value in record.items():
        if (why := _check_cell(column, value)) is not None:
            table.problems.append((number, why))
            return
    for column in record:
        if column not in table.columns:
            table.columns.append(column)
    table.records.append(record)
    table.numbers.append(number)


def _read_jsonl(path: Path, table: Table) -> None:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            raw = raw.removeprefix(BOM) if number == 1 else raw
            if not raw.strip():
                continue
            try:
                record = _parse_line(raw.strip())
            except _BadLine as exc:
                table.problems.append((number, str(exc)))
                continue
            _add(table, number, record)


def _text(path: Path, name: str) -> str:
    """The whole file as text, or DatasetError naming the line with the first byte that is not UTF-8."""
    data = path.read_bytes().removeprefix(BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetError(
            f"The dataset file {name} is not UTF-8 text: line {line}, column {column} has the byte 0x{data[exc.start]:02x}.",
            hint="Save the file as UTF-8 (e.g. 'Save as… → UTF-8' in a spreadsheet or editor) and upload it again.",
            problems=[f"line {line}: not UTF-8 text"],
        ) from None


def _read_json(path: Path, table: Table) -> None:
    text = _text(path, table.name)
    try:
        data = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed in JSON data")))
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"The dataset file {table.name} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}.",
            hint="A .json file must hold one array of objects; for one object per line, name it .jsonl.",
            problems=[f"line {exc.lineno}: not valid JSON ({exc.msg})"],
        ) from None
    except ValueError as exc:
        raise DatasetError(f"The dataset file {table.name}: {exc}.", hint="Replace NaN/Infinity with null or a number.") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}: one list inside one object
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list):
        raise DatasetError(
            f"The dataset file {table.name} holds a JSON {type(data).__name__}, not a list of rows.",
            hint='Write the rows as an array: [{"prompt": "...", "completion": "..."}, ...], or one object per line as .jsonl.',
        )
    for number, record in enumerate(data, start=1):
        _add(table, number, record)


def _read_csv(path: Path, table: Table) -> None:
    text = _text(path, table.name)
    csv.field_size_limit(max(MAX_FIELD_BYTES * 4, csv.field_size_limit()))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DatasetError(f"The dataset file {table.name}: line 1 is not a CSV header ({exc}).", hint="Check the file's quoting.") from None
    if not header or not any(h.strip() for h in header):
        raise DatasetError(f"The dataset file {table.name} has no header line.", hint="The first line must name the columns, e.g. prompt,completion.")
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes or "" in header:
        what = f"the column {dupes[0]!r} twice" if dupes else "a column without a name"
        raise DatasetError(f"The dataset file {table.name} has {what} in its header (line 1).", hint="Give every column one unique name.")
    table.columns = list(header)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            table.problems.append((line, f"not valid CSV ({exc})"))
            break
        if not cells or not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            table.problems.append((line, f"has {len(cells)} fields; the header has {len(header)}"))
            continue
        _add(table, line, dict(zip(header, cells)))


def _read_parquet(path: Path, table: Table) -> None:
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise DatasetError(f"The dataset file {table.name} is not a readable Parquet file ({exc}).", hint="Export it again as Parquet.") from None
    table.columns = list(data.column_names)
    for number, record in enumerate(data.to_pylist(), start=1):
        _add(table, number, record)


READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}


def read_table(path: Path, name: str | None = None, max_bytes: int | None = None) -> Table:
    """Every readable record of a dataset file; unreadable lines are in Table.problems (DatasetError for the file)."""
    name = name or str(path)
    kind = file_kind(path, name, max_bytes)
    table = Table(name=name, kind=kind, unit="line" if kind in ("jsonl", "csv") else "row", columns=[], records=[], numbers=[])
    READERS[kind](path, table)
    return table


__all__ = ["MAX_FIELD_BYTES", "MAX_LINE_BYTES", "Table", "read_table"]
