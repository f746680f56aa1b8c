"""The streaming reads (web process) and the whole-file reads (worker) agree: same records, same errors, same row numbers."""

from __future__ import annotations

import dataclasses
import json
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets import DatasetError
from app.datasets.formats import check_rows, normalise
from app.datasets.tables import PARQUET_BATCH_ROWS, read_table, scan_table
from app.services.inspector import MAX_REPORT_ROWS, inspect_sample
from app.settings import load_settings
from tests.app.datasets.bad_files import CORPUS

LIMIT = 3 * 2**20  # the corpus's over-limit case is written for a 3 MiB limit


def _error(call) -> tuple[str, str | None, list[str]]:
    with pytest.raises(DatasetError) as info:
        call()
    return info.value.message, info.value.hint, info.value.problems


@pytest.mark.parametrize(("name", "write", "expected", "how"), CORPUS, ids=[c[0] for c in CORPUS])
def test_every_bad_file_gets_the_same_error_streamed_as_read_whole(tmp_path: Path, name, write, expected, how):
    path = tmp_path / name
    write(path)
    shape, mapping = how.get("shape", "auto"), how.get("mapping")
    whole = _error(lambda: normalise(read_table(path, name, LIMIT), shape, mapping))
    streamed = _error(lambda: check_rows(scan_table(path, name, LIMIT), shape, mapping, stop=0))
    assert streamed == whole


def test_a_parquet_file_is_read_in_batches_with_rows_numbered_across_them(tmp_path):
    n = PARQUET_BATCH_ROWS * 2 + 500
    completions = [str(i) for i in range(n)]
    completions[n - 3] = None
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(n)], "completion": completions}), path, row_group_size=700)
    scanned, whole = scan_table(path), read_table(path)
    assert (scanned.size, scanned.columns, scanned.records) == (n, ["prompt", "completion"], [])
    assert list(scanned.iter_records()) == list(zip(whole.numbers, whole.records))
    _, _, problems = _error(lambda: check_rows(scanned, stop=0))
    assert problems == [f"row {n - 2}: missing 'completion' (this file is prompt/completion data)"]


def test_a_window_keeps_only_its_rows_and_counts_them_all(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(50)) + "\n\n")
    rows, total = check_rows(scan_table(path), start=40, stop=45)
    assert total == 50 and rows.lines == [41, 42, 43, 44, 45]
    assert rows.rows == [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(40, 45)]
    assert rows.rows == normalise(read_table(path)).rows[40:45]
    assert list(islice(scan_table(path).iter_records(), 49, None)) == [(50, {"prompt": "q49", "completion": "a49"})]


def test_a_json_array_over_the_limit_is_refused_with_a_pointer_to_jsonl(tmp_path, monkeypatch):
    from app.datasets import tables

    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"text": "x" * 100}] * 12_000))  # 1.3 MiB
    monkeypatch.setattr(tables, "MAX_JSON_BYTES", 2**20)
    message, hint, _ = _error(lambda: scan_table(path, "big.json"))
    assert message == "The dataset file big.json is a 1.3 MiB JSON array; a .json file may be at most 1.0 MiB."
    assert "JSONL" in hint


@pytest.fixture(scope="module")
def settings(data_dir):
    return dataclasses.replace(load_settings(), data_dir=Path(data_dir))


def test_the_inspector_shows_a_row_past_the_reports_rows_and_still_checks_every_row(tmp_path, settings):
    n = MAX_REPORT_ROWS + 5
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": f" A{i}"}) + "\n" for i in range(n)))
    spec = {"base_model": "demo", "dataset": {"source": "jsonl", "path": str(path)}, "training": {}}
    view = inspect_sample(spec, n - 1, settings)
    assert (view.row, view.line, view.rows) == (n - 1, n, n) and f"Q{n - 1}?" in view.text
    assert inspect_sample(spec, 3, settings).text.startswith("Q3?")
    message, _, _ = _error(lambda: inspect_sample(spec, n, settings))
    assert f"has {n} rows" in message
    with path.open("a") as fh:
        fh.write('{"prompt": "late", "completion": ""}\n')
    _, _, problems = _error(lambda: inspect_sample(spec, 0, settings))
    assert problems == [f"line {n + 1}: 'completion' is empty, so nothing to learn from"]
