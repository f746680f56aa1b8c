"""Reading a dataset file into plain records (one dict per row), naming every line or row that cannot be read.

Nothing here knows about training formats: that is formats.py. What is checked here is the file itself:
UTF-8 text, valid JSON objects, a CSV row with as many fields as the header, cells JSON can hold (no
bytes), and no field over MAX_FIELD_BYTES. Lines of JSONL/CSV files are counted from 1 as an editor
shows them; JSON arrays and Parquet tables have rows counted from 1.

Two ways to read, one set of checks: read_table keeps every record (the worker trains on them all);
scan_table makes one streaming pass that keeps only the columns, the problems and the count, and
Table.iter_records streams the records again when asked. JSONL and CSV are read line by line, Parquet
by record batches; a JSON array is parsed whole, so .json files over MAX_JSON_BYTES are refused (use JSONL).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsonl import MAX_LINE_BYTES, _BadLine, _parse_line
from .rows import DatasetError
from .sniff import file_kind

MAX_FIELD_BYTES = 1_000_000
BOM = b"\xef\xbb\xbf"
MAX_JSON_BYTES = 256 * 2**20  # a JSON array is parsed whole; bigger ones must be JSONL
PARQUET_BATCH_ROWS = 1024


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
    path: Path | None = None  # set by scan_table: the records are not kept, iter_records reads them again
    count: int = 0  # readable records a scan found
    first: int | None = None  # the line/row number of the first readable record a scan found

    @property
    def size(self) -> int:
        """How many readable records the file has."""
        return self.count if self.path is not None else len(self.records)

    @property
    def first_number(self) -> int | None:
        if self.path is not None:
            return self.first
        return self.numbers[0] if self.numbers else None

    def iter_records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line/row number, record) of every readable record: kept ones, or streamed from the file again."""
        if self.path is None:
            yield from zip(self.numbers, self.records)
            return
        again = Table(self.name, self.kind, self.unit, [], [], [])
        yield from READERS[self.kind](self.path, again)


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


def _usable(table: Table, number: int, record: Any) -> bool:
    """Whether a record can be used; a problem is noted and its columns added to the table's otherwise."""
    if not isinstance(record, dict):
        table.problems.append((number, f"expected a JSON object, got {type(record).__name__}"))
        return False
    for column, value in record.items():
        if (why := _check_cell(column, value)) is not None:
            table.problems.append((number, why))
            return False
    for column in record:
        if column not in table.columns:
            table.columns.append(column)
    return True


Records = Iterator[tuple[int, dict[str, Any]]]


def _read_jsonl(path: Path, table: Table) -> Records:
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
            if _usable(table, number, record):
                yield number, record


def _check_utf8(path: Path, name: str) -> None:
    """DatasetError naming the line with the first byte that is not UTF-8; read line by line, nothing kept."""
    with path.open("rb") as fh:
        for line, data in enumerate(fh, start=1):
            data = data.removeprefix(BOM) if line == 1 else data
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:  # a character never spans a newline, so a line decodes as the whole would
                raise DatasetError(
                    f"The dataset file {name} is not UTF-8 text: line {line}, column {exc.start + 1} has the byte 0x{data[exc.start]:02x}.",
                    hint="Save the file as UTF-8 (e.g. 'Save as… → UTF-8' in a spreadsheet or editor) and upload it again.",
                    problems=[f"line {line}: not UTF-8 text"],
                ) from None


def _text(path: Path, name: str) -> str:
    """The whole file as text (JSON arrays only, at most MAX_JSON_BYTES), or DatasetError naming a byte that is not UTF-8."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DatasetError(
            f"The dataset file {name} is a {size / 2**20:.1f} MiB JSON array; a .json file may be at most {MAX_JSON_BYTES / 2**20:.1f} MiB.",
            hint="Save it as JSONL (one object per line, named .jsonl): JSONL, CSV and Parquet files are read a piece at a time.",
        )
    _check_utf8(path, name)
    return path.read_bytes().removeprefix(BOM).decode("utf-8")


def _read_json(path: Path, table: Table) -> Records:
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
        if _usable(table, number, record):
            yield number, record


def _read_csv(path: Path, table: Table) -> Records:
    _check_utf8(path, table.name)  # first, whole: a bad byte is named before any CSV problem, as when the text was read at once
    csv.field_size_limit(max(MAX_FIELD_BYTES * 4, csv.field_size_limit()))
    with path.open(encoding="utf-8-sig", newline="") as fh:
        yield from _csv_records(csv.reader(fh), table)


def _csv_records(reader: Any, table: Table) -> Records:
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
        record = dict(zip(header, cells))
        if _usable(table, line, record):
            yield line, record


def _read_parquet(path: Path, table: Table) -> Records:
    import pyarrow.parquet as pq

    def unreadable(exc: Exception) -> DatasetError:
        return DatasetError(f"The dataset file {table.name} is not a readable Parquet file ({exc}).", hint="Export it again as Parquet.")

    try:
        data = pq.ParquetFile(path)
        table.columns = list(data.schema_arrow.names)
        batches = data.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise unreadable(exc) from None
    number = 0
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # noqa: BLE001
            raise unreadable(exc) from None
        if batch is None:
            return
        for record in batch.to_pylist():
            number += 1
            if _usable(table, number, record):
                yield number, record


READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}


def read_table(path: Path, name: str | None = None, max_bytes: int | None = None) -> Table:
    """Every readable record of a dataset file; unreadable lines are in Table.problems (DatasetError for the file)."""
    name = name or str(path)
    kind = file_kind(path, name, max_bytes)
    table = Table(name=name, kind=kind, unit="line" if kind in ("jsonl", "csv") else "row", columns=[], records=[], numbers=[])
    for number, record in READERS[kind](path, table):
        table.records.append(record)
        table.numbers.append(number)
    return table


def scan_table(path: Path, name: str | None = None, max_bytes: int | None = None) -> Table:
    """read_table's checks in one streaming pass that keeps no record: columns, problems, count; iter_records streams them."""
    name = name or str(path)
    kind = file_kind(path, name, max_bytes)
    table = Table(name=name, kind=kind, unit="line" if kind in ("jsonl", "csv") else "row", columns=[], records=[], numbers=[], path=path)
    for number, _ in READERS[kind](path, table):
        table.first = number if table.first is None else table.first
        table.count += 1
    return table


__all__ = ["MAX_FIELD_BYTES", "MAX_JSON_BYTES", "MAX_LINE_BYTES", "Table", "read_table", "scan_table"]
