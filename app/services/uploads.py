"""Training data people bring: a JSONL file uploaded in the browser, checked and kept under the data directory.

A stop-gap until the datasets issue lands (a Dataset table, previews, Hub datasets). The check is a
streamed pass over the file: every line must be a JSON object (NaN/Infinity refused), at most
MAX_LINE_BYTES long; the first few bad lines are reported by number, so a person fixes them in one go.
The file is stored under <data_dir>/uploads/ named by its content hash, so uploading the same file
twice stores it once and a job's path never changes under it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.settings import Settings, get_settings

MAX_LINE_BYTES = 1 << 20
MAX_REPORTED = 5
DEMO_DATASET_FILE = Path(__file__).resolve().parents[2] / "worker" / "training" / "demo_data" / "demo.jsonl"


class UploadError(ValueError):
    """The file cannot be used; `problems` names each bad line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the file cannot be used:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class StoredUpload:
    path: Path
    rows: int
    size_bytes: int
    columns: tuple[str, ...]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in training data")


def _check_lines(path: Path) -> tuple[int, tuple[str, ...], list[str]]:
    rows, problems, keys = 0, [], set()
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if len(raw) > MAX_LINE_BYTES:
                problems.append(f"line {number}: longer than {MAX_LINE_BYTES // 1024} KiB")
                continue
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
            except UnicodeDecodeError:
                problems.append(f"line {number}: not UTF-8 text")
                continue
            except ValueError as exc:
                problems.append(f"line {number}: not valid JSON ({exc})")
                continue
            if not isinstance(row, dict):
                problems.append(f"line {number}: expected an object like {{\"messages\": [...]}}, got {type(row).__name__}")
                continue
            rows += 1
            keys.update(row)
            if len(problems) >= MAX_REPORTED:
                break
    return rows, tuple(sorted(keys)), problems


def store_jsonl(source: Path, *, original_name: str, settings: Settings | None = None) -> StoredUpload:
    """Check an uploaded JSONL file and keep a copy under the data directory; raises UploadError."""
    settings = settings or get_settings()
    if not original_name.lower().endswith((".jsonl", ".json")):
        raise UploadError([f"{original_name}: expected a .jsonl file (one JSON object per line)"])
    size = source.stat().st_size
    if size > settings.max_upload_bytes:
        raise UploadError([f"the file is {size / 2**20:.0f} MiB; the limit is {settings.max_upload_bytes / 2**20:.0f} MiB (STUDIO_MAX_UPLOAD_BYTES)"])
    rows, columns, problems = _check_lines(source)
    if problems:
        raise UploadError(problems)
    if rows == 0:
        raise UploadError([f"{original_name}: the file has no rows"])
    digest = hashlib.sha256()
    with source.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(original_name).stem).strip("-")[:60] or "data"
    target = settings.data_dir / "uploads" / f"{digest.hexdigest()[:16]}-{stem}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tmp = target.with_suffix(".part")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return StoredUpload(target, rows, size, columns)


@lru_cache(maxsize=64)
def _count_rows(path: str, _mtime: float, _size: int) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def dataset_rows(dataset: dict[str, Any] | None, settings: Settings | None = None) -> int | None:
    """Rows of a job spec's dataset section (for the step estimate), or None when unknown here.

    Only files under the data directory are counted: the estimate must not reveal anything about
    other files on the server.
    """
    dataset = dataset or {}
    if dataset.get("source", "demo") == "demo":
        path = DEMO_DATASET_FILE
    elif dataset.get("path"):
        path = Path(str(dataset["path"])).resolve()
        if not path.is_relative_to((settings or get_settings()).data_dir.resolve()):
            return None
    else:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return _count_rows(str(path), stat.st_mtime, stat.st_size)
