"""One way in for every reader of training data: a file (or the demo) -> checked, normalised Rows.

The web process calls it to check an upload and to preview; the worker calls it before loading a model,
so what a person was shown is what is trained.
"""

from __future__ import annotations

from pathlib import Path

from .formats import check_rows, normalise
from .rows import DEMO_DATASET_FILE, DatasetError, Rows
from .tables import read_table, scan_table


def read_rows(source: str, path: str | None, fmt: str = "auto", mapping: dict[str, str] | None = None) -> Rows:
    """Read and check a dataset ('demo', or a CSV/JSON/JSONL/Parquet file); DatasetError names the bad lines/rows.

    `fmt` is a shape of app.datasets.formats.SHAPES or 'auto'; `mapping` maps its fields to columns.
    """
    file, name = _locate(source, path)
    return normalise(read_table(file, name), fmt, mapping)


def read_rows_window(source: str, path: str | None, fmt: str = "auto", mapping: dict[str, str] | None = None, start: int = 0,
                     stop: int = 0) -> tuple[Rows, int]:
    """read_rows' checks of every row in one streaming pass, keeping only rows start..stop; and how many rows there are.

    For the web process (sample inspector): memory is bounded by the window, not the file."""
    file, name = _locate(source, path)
    return check_rows(scan_table(file, name), fmt, mapping, start, stop)


def _locate(source: str, path: str | None) -> tuple[Path, str]:
    """The file to read and what to call it in messages."""
    if source == "demo":
        file, name = DEMO_DATASET_FILE, "the demo dataset"
    else:
        file = Path(path or "")
        name = file.name if source == "stored" else str(file)  # a stored copy's folder is a hash: its name says more
        if not path or not file.is_file():
            raise DatasetError(f"The dataset file {name or '(no path)'} does not exist on the worker.",
                               hint="Upload the file again or fix its path.")
    return file, name
