"""Stored datasets: bring a file, a local path or a Hub dataset in once, list, preview, map columns, delete.

A dataset is checked completely before anything is kept (app.datasets reads every row the way the
trainer will), then copied under <data_dir>/datasets/<sha256[:16]>/ and recorded in the datasets table.
The same content brought twice is the same record. On any failure the temporary copy is removed and no
row is written, so nothing half-imported is left. The stored file is the original bytes (or, for a Hub
dataset, its rows as JSONL): changing the column mapping later re-reads it, no conversion is redone.

The web process never holds a whole file: checking streams it (app.datasets.tables.scan_table), a preview
page streams to that page, and only a small summary (columns, row count) per file version is cached.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets import DatasetError, Rows, detect
from app.datasets.formats import SHAPES, check_mapping, check_rows, normalise, raise_problems
from app.datasets.hub import export_jsonl
from app.datasets.roots import check_server_path
from app.datasets.tables import Table, read_table, scan_table
from app.db.models import Dataset, Job
from app.jobspec import DatasetSpec, JobSpec, JobSpecError
from app.settings import Settings, get_settings

PREVIEW_CELL_CHARS = 300
ACTIVE_STATUSES = ("queued", "running")


class DatasetNotFound(LookupError):
    def __init__(self, dataset_id: int):
        super().__init__(f"There is no dataset {dataset_id}.")
        self.dataset_id = dataset_id


class DatasetInUse(ValueError):
    pass


@dataclass(frozen=True)
class Preview:
    columns: list[str]
    rows: list[list[str]]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-.")[:80]
    return stem or "data"


def _check(table: Table, shape: str, mapping: dict[str, str] | None) -> tuple[tuple[Rows, int] | None, str | None, dict[str, str] | None]:
    """(Rows kept empty, row count) for the detected (or given) shape; (None, guess, guess mapping) when only a person can decide."""
    found = detect(table.columns)
    if shape == "auto" and not mapping and not found.sure:
        if table.problems:  # a broken file stays broken whatever the mapping
            raise_problems(table)
        if not table.size:
            normalise(table)  # says the file has no rows
        if found.shape is not None:
            try:
                return check_rows(table, found.shape, found.mapping, stop=0), found.shape, found.mapping
            except DatasetError:
                pass
        return None, found.shape, found.mapping or None
    checked = check_rows(table, shape, mapping, stop=0)
    detected = checked[0].detected
    return checked, detected, mapping or (found.mapping if found.sure and found.shape == detected else None)


def import_file(
    session: Session, file: Path, *, name: str, source: str = "upload", origin: str | None = None, shape: str = "auto",
    mapping: dict[str, str] | None = None, settings: Settings | None = None,
) -> Dataset:
    """Check a file and store it once; DatasetError (naming the file and the lines/rows) leaves nothing behind."""
    settings = settings or get_settings()
    file = Path(file)
    table = scan_table(file, name, settings.max_upload_bytes)
    checked, detected, used_mapping = _check(table, shape, mapping)
    sha = _sha256(file)
    existing = session.scalar(select(Dataset).where(Dataset.sha256 == sha))
    if existing is not None:
        return existing
    folder = settings.data_dir / "datasets" / sha[:16]
    target = folder / _safe_name(name)
    if target.suffix.lower() not in (".csv", ".json", ".jsonl", ".ndjson", ".parquet"):
        target = target.with_name(f"{target.name}.{table.kind}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (target.name + ".part")
    try:
        shutil.copyfile(file, tmp)
        tmp.replace(target)
        record = Dataset(
            name=Path(name).name[:200], source=source, origin=origin or name, path=str(target), rows=checked[1] if checked else table.size,
            columns=list(table.columns), size_bytes=file.stat().st_size, sha256=sha, format=checked[0].format if checked else "",
            detected=detected, mapping=used_mapping,
        )
        session.add(record)
        session.commit()
    except BaseException:
        session.rollback()
        tmp.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


def import_path(session: Session, path: str, *, settings: Settings | None = None, **kwargs: Any) -> Dataset:
    """A file or dataset folder on the server (data files only; loading scripts are refused), inside STUDIO_DATASET_ROOTS."""
    if not (path or "").strip():
        raise DatasetError("Give the path of a file or dataset folder on the server.", hint="e.g. /srv/datasets/support.jsonl")
    check_server_path(path, settings or get_settings())
    local = Path(path).expanduser()
    if local.is_dir():
        return import_hub(session, str(local.resolve()), settings=settings, **kwargs)
    if not local.exists():
        raise DatasetError(f"There is no file or folder {path} on the server.", hint="Give the full path of a CSV, JSON, JSONL or Parquet file, or of a dataset folder.")
    return import_file(session, local, name=local.name, source="path", origin=str(local), settings=settings, **kwargs)


def import_hub(session: Session, repo: str, *, config: str | None = None, split: str = "train", settings: Settings | None = None,
               **kwargs: Any) -> Dataset:
    """A Hub dataset (or local dataset folder) via `datasets`, exported to JSONL and stored like an upload."""
    settings = settings or get_settings()
    repo = (repo or "").strip()
    if not repo:
        raise DatasetError("Give a Hub dataset id like 'org/name', or a local path.", hint="e.g. tatsu-lab/alpaca")
    split = (split or "train").strip()
    local = Path(repo).expanduser().is_dir()
    if local or repo.startswith(("/", "~", ".")):  # a folder on the server, not a Hub id: the path rule applies
        check_server_path(repo, settings)
    label = Path(repo).name if local else repo.replace("/", "--")
    name = f"{label}{'-' + config if config else ''}-{split}.jsonl"
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        out = Path(tmp) / _safe_name(name)
        export_jsonl(repo, config, split, out, cache_dir=settings.data_dir / "cache" / "datasets")
        origin = repo + (f" ({config})" if config else "") + f" [{split}]"
        return import_file(session, out, name=name, source="path" if local else "hub", origin=origin, settings=settings, **kwargs)


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id.desc())))


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    record = session.get(Dataset, dataset_id, populate_existing=True)
    if record is None:
        raise DatasetNotFound(dataset_id)
    return record


@lru_cache(maxsize=32)
def _scan(path: str, _mtime: float, _size: int) -> Table:
    return scan_table(Path(path))  # keeps columns, problems and the count, never the records


def table_of(record: Dataset) -> Table:
    """The stored file's summary (cached while the file is unchanged); its records stream from the file on demand."""
    path = Path(record.path)
    if not path.is_file():
        raise DatasetError(f"The stored file of dataset {record.name} is missing ({path}).", hint="Delete the dataset and bring it in again.")
    stat = path.stat()
    table = _scan(str(path), stat.st_mtime, stat.st_size)
    return Table(record.name, table.kind, table.unit, table.columns, [], [], table.problems, path=path, count=table.count, first=table.first)


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= PREVIEW_CELL_CHARS else text[:PREVIEW_CELL_CHARS] + "…"


def preview(session: Session, dataset_id: int, *, page: int = 1, page_size: int = 20) -> Preview:
    """One page of the stored rows as the file has them (cells cut at PREVIEW_CELL_CHARS)."""
    record = get_dataset(session, dataset_id)
    table = table_of(record)
    page_size = max(1, min(int(page_size), 200))
    total = table.size
    page = max(1, min(int(page), max(1, -(-total // page_size))))
    chunk = [r for _, r in islice(table.iter_records(), (page - 1) * page_size, page * page_size)]
    return Preview(list(table.columns), [[_cell(r.get(c)) for c in table.columns] for r in chunk], page, page_size, total)


def rows_of(record: Dataset, shape: str | None = None, mapping: dict[str, str] | None = None) -> Rows:
    """The stored dataset normalised with its (or the given) format and mapping, as the trainer will read it (every row kept)."""
    shape, path = shape or record.detected or "auto", table_of(record).path  # table_of: the missing-file message
    return normalise(read_table(Path(path or record.path), record.name), shape, record.mapping if mapping is None else mapping)


def check_stored(record: Dataset, shape: str | None = None, mapping: dict[str, str] | None = None) -> tuple[Rows, int]:
    """rows_of's checks in one streaming pass, keeping no row: (Rows without rows, how many rows there are)."""
    shape = shape or record.detected or "auto"
    return check_rows(table_of(record), shape, record.mapping if mapping is None else mapping, stop=0)


def update_mapping(session: Session, dataset_id: int, *, shape: str, mapping: dict[str, str]) -> Dataset:
    """Set the format and column mapping after checking every row reads with them (DatasetError otherwise; nothing saved)."""
    record = get_dataset(session, dataset_id)
    if shape not in SHAPES:
        raise DatasetError(f"{shape!r} is not a dataset format.", hint=f"Pick one of {', '.join(SHAPES)}.")
    mapping = {k: v for k, v in (mapping or {}).items() if v}
    rows, count = check_stored(record, shape, mapping)
    record.detected, record.mapping, record.format, record.rows = shape, mapping, rows.format, count
    session.commit()
    return record


def _jobs_using(session: Session, dataset_id: int) -> list[int]:
    jobs = session.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES)))
    return [j.id for j in jobs if (j.config or {}).get("dataset", {}).get("dataset_id") == dataset_id]


def delete_dataset(session: Session, dataset_id: int) -> None:
    """Remove the record and its stored file; refused while a queued or running job trains on it."""
    record = get_dataset(session, dataset_id)
    using = _jobs_using(session, dataset_id)
    if using:
        raise DatasetInUse(f"Dataset {record.name} is used by run {using[0]}, which is still queued or running; cancel it or wait, then delete.")
    folder = Path(record.path).parent
    session.delete(record)
    session.commit()
    shutil.rmtree(folder, ignore_errors=True)


def resolve_spec(session: Session, dataset: dict[str, Any]) -> dict[str, Any]:
    """A job spec's dataset section with a stored dataset's path, format and mapping filled in (DatasetError/NotFound)."""
    if dataset.get("source") != "stored":
        return dataset
    record = get_dataset(session, int(dataset["dataset_id"]))
    shape = dataset.get("format") or "auto"
    shape = record.detected if shape == "auto" and record.detected else shape
    mapping = dataset.get("mapping")
    mapping = record.mapping if mapping is None else mapping
    if shape == "auto" or not record.format and mapping is None:
        raise DatasetError(f"The format of dataset {record.name} is not known yet.", hint="Pick its format and map its columns on the Datasets page.")
    check_mapping(shape, mapping or {}, list(record.columns or []), record.name)
    if shape != record.detected or (mapping or None) != (record.mapping or None):
        check_stored(record, shape, mapping or {})  # not the checked combination: read every row with it now
    return {**dataset, "path": record.path, "format": shape, "mapping": mapping or None}


def resolve_job_spec(session: Session, parsed: JobSpec) -> JobSpec:
    """A parsed job whose stored dataset exists and whose mapping fits, its path filled in; JobSpecError otherwise."""
    data = parsed.dataset.to_dict()
    try:
        resolved = resolve_spec(session, data)
    except DatasetNotFound as exc:
        raise JobSpecError([f"dataset.dataset_id: {exc} Pick one from the Datasets page."]) from None
    except DatasetError as exc:
        raise JobSpecError([f"dataset: {exc.message} {exc.hint or ''}".strip()]) from None
    parsed.dataset = DatasetSpec(**resolved)
    return parsed


def check_job_path(parsed: JobSpec, settings: Settings) -> None:
    """A job reading a file by path obeys STUDIO_DATASET_ROOTS; JobSpecError naming dataset.path otherwise."""
    try:
        check_server_path(parsed.dataset.path or "", settings)
    except DatasetError as exc:
        raise JobSpecError([f"dataset.path: {exc.message} {exc.hint or ''}".strip()]) from None
