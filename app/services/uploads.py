"""How many rows a job spec's dataset has, for the step estimate on the New run page and /api/estimate.

(Uploads themselves became stored datasets: app.services.datasets.) A stored dataset's count comes from
its record; a file is counted only when it lies under the data directory, so the estimate reveals nothing
about other files on the server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from app.datasets.rows import DEMO_DATASET_FILE
from app.settings import Settings, get_settings


@lru_cache(maxsize=64)
def _count_rows(path: str, _mtime: float, _size: int) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _stored_rows(dataset_id: Any, settings: Settings) -> int | None:
    from app.db.models import Dataset
    from app.db.session import session_scope

    if not isinstance(dataset_id, int) or isinstance(dataset_id, bool):
        return None
    with session_scope(settings) as session:
        record = session.get(Dataset, dataset_id)
        return record.rows if record is not None else None


def dataset_rows(dataset: dict[str, Any] | None, settings: Settings | None = None) -> int | None:
    """Rows of a job spec's dataset section (for the step estimate), or None when unknown here."""
    dataset = dataset or {}
    settings = settings or get_settings()
    source = dataset.get("source", "demo")
    if source == "stored":
        return _stored_rows(dataset.get("dataset_id"), settings)
    if source == "demo":
        path = DEMO_DATASET_FILE
    elif dataset.get("path") and str(dataset["path"]).endswith((".jsonl", ".ndjson")):
        path = Path(str(dataset["path"])).resolve()
        if not path.is_relative_to(settings.data_dir.resolve()):
            return None
    else:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return _count_rows(str(path), stat.st_mtime, stat.st_size)
