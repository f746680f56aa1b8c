"""Datasets from the Hugging Face Hub or a local dataset folder, loaded with `datasets` and written out as JSONL.

The rows are then stored and checked like any uploaded file. Code that ships with a dataset (a loading
script, which `datasets` would run only with trust_remote_code) is refused: the studio never runs
code that came with data. Without network (HF_DATASETS_OFFLINE, no route) the message names the repo
and suggests downloading it elsewhere and giving the studio a local path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .rows import DatasetError

REMOTE_CODE_WORDS = ("trust_remote_code", "dataset scripts are no longer supported", "loading script")
OFFLINE_WORDS = ("offline", "couldn't reach", "could not reach", "connection", "name resolution", "max retries", "timed out")


def _refuse_script(where: str, script: str) -> DatasetError:
    return DatasetError(
        f"The dataset {where} comes with a loading script ({script}); running it would need trust_remote_code, which the studio refuses.",
        hint="Use a dataset published as data files (Parquet, CSV, JSON), or export the rows to such a file and upload it.",
    )


def _local_script(folder: Path) -> str | None:
    scripts = sorted(p.name for p in folder.glob("*.py"))
    return scripts[0] if scripts else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        raise DatasetError("The dataset holds binary data (images, audio...), which the studio cannot train on.",
                           hint="Pick a text dataset.")
    return str(value)


def export_jsonl(repo: str, config: str | None, split: str, target: Path, cache_dir: Path | None = None) -> int:
    """Load `repo` (a Hub id or a local dataset folder) and write its `split` to `target` as JSONL; the row count."""
    where = f"'{repo}'" + (f" (config {config!r})" if config else "") + f", split {split!r}"
    local = Path(repo).expanduser()
    if local.is_dir() and (script := _local_script(local)):
        raise _refuse_script(where, script)
    import datasets  # lazy: only this path needs it

    try:
        loaded = datasets.load_dataset(str(local) if local.is_dir() else repo, name=config or None, split=split,
                                       cache_dir=str(cache_dir) if cache_dir else None)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; each is turned into words below
        text = f"{type(exc).__name__}: {exc}".lower()
        if any(w in text for w in REMOTE_CODE_WORDS):
            raise _refuse_script(where, "a .py file") from None
        if "split" in text and split in str(exc):
            raise DatasetError(f"The dataset {where} has no split {split!r} ({exc}).", hint="Give one of the splits it has, e.g. 'train'.") from None
        if not local.is_dir() and (os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1" or any(w in text for w in OFFLINE_WORDS)):
            raise DatasetError(
                f"Could not load the Hub dataset {where}: the Hugging Face Hub cannot be reached from this server (offline).",
                hint="Download the dataset where there is network (e.g. its Parquet or JSONL files) and give its local file "
                "or folder path instead, or upload the file.",
            ) from None
        raise DatasetError(f"Could not load the dataset {where}: {exc}", hint="Check the id, config and split, or give a local path.") from None
    rows = 0
    tmp = target.with_name(target.name + ".part")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in loaded:
                fh.write(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n")
                rows += 1
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
