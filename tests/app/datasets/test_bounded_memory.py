"""The web process checks and previews a big dataset without holding it: peak traced memory stays under a bound.

A ~64 MB JSONL and a ~64 MB CSV are written in tmp (one block repeated), imported through the service and
their last page previewed, all under tracemalloc. Read whole (the old web path, still the worker's), the same
JSONL peaks near 98 MiB; streamed, near 2 MiB.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.datasets import DatasetError
from app.services import datasets as service

BOUND = 16 * 2**20  # bytes of traced Python memory a 64 MB file may use while checked and previewed (measured: ~2 MiB)
ROWS = 32_000  # ~2 KB a row: ~64 MB
BLOCK = 1_000  # rows written at once
FILLER = "lorem ipsum dolor sit amet " * 76  # ~2 KB of text per row


def _write(path: Path, header: str, line: Callable[[int], str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(header)
        block = "".join(line(i) for i in range(BLOCK))
        for _ in range(ROWS // BLOCK):
            fh.write(block)
    return path


def _jsonl(path: Path) -> Path:
    return _write(path, "", lambda i: json.dumps({"instruction": f"Say {i}. {FILLER}", "input": "", "output": str(i)}) + "\n")


def _csv(path: Path) -> Path:
    return _write(path, "question,answer,source\n", lambda i: f'"What is {i}? {FILLER}",{2 * i},book\n')


def _peak(work: Callable[[], Any]) -> tuple[Any, int]:
    """What `work` returns and the peak traced memory (bytes) while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the bound is the file's, not the database's: one is enough
@pytest.mark.parametrize(("make", "name", "columns", "detected"), [
    (_jsonl, "big.jsonl", ["instruction", "input", "output"], "instruction"),
    (_csv, "big.csv", ["question", "answer", "source"], "prompt_completion"),
])
def test_a_big_file_is_imported_and_its_last_page_previewed_in_bounded_memory(tmp_path, session, studio, make, name, columns, detected):
    src = make(tmp_path / name)
    assert src.stat().st_size > 60 * 2**20

    def work() -> tuple[Any, service.Preview]:
        record = service.import_file(session, src, name=name, settings=studio)
        return record, service.preview(session, record.id, page=10**6, page_size=20)

    (record, page), peak = _peak(work)
    assert (record.rows, record.columns, record.detected) == (ROWS, columns, detected)
    assert (page.page, page.pages, page.total, len(page.rows)) == (ROWS // 20, ROWS // 20, ROWS, 20)
    last = BLOCK - 1  # the file repeats one block: its last row is the block's last
    assert page.rows[-1][0].startswith(f"Say {last}." if detected == "instruction" else f"What is {last}?")
    assert peak < BOUND, f"peak traced memory {peak / 2**20:.1f} MiB for a {src.stat().st_size / 2**20:.0f} MiB file"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_line_far_into_a_big_file_is_still_named(tmp_path, session, studio):
    src = _jsonl(tmp_path / "late.jsonl")
    with src.open("a", encoding="utf-8") as fh:
        fh.write('{"instruction": "x", "output": ""}\n')
    with pytest.raises(DatasetError) as err:
        service.import_file(session, src, name="late.jsonl", settings=studio)
    assert err.value.problems == [f"line {ROWS + 1}: 'output' is empty, so nothing to learn from"]
