"""The contract between reading a dataset and tokenizing it: normalised rows, and the error a person can fix.

Every reader (JSONL, CSV, Parquet, Hub, ...) produces `Rows` in one of three normalised formats, which is
all the tokenizer and the sample inspector need to know:

    chat               {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
    prompt_completion  {"prompt": str, "completion": str}
    text               {"text": str}

Torch-free, like everything in app.datasets: the web process uses it to check uploads and to show samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMALISED_FORMATS = ("chat", "prompt_completion", "text")
DEMO_DATASET_FILE = Path(__file__).resolve().parents[2] / "worker" / "training" / "demo_data" / "demo.jsonl"


class DatasetError(ValueError):
    """A dataset a person must fix: the message names the file and the rows; `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems or [])

    def __str__(self) -> str:
        return self.message


@dataclass
class Rows:
    """The checked rows of one dataset, normalised to one of NORMALISED_FORMATS."""

    source: str  # what to call the data in messages ("the demo dataset", a file name, a Hub id)
    format: str  # one of NORMALISED_FORMATS
    rows: list[dict[str, Any]]
    lines: list[int]  # the line (JSONL) or 1-based row number (tables) of each row, for messages
    detected: str | None = None  # the shape found before normalising (e.g. "sharegpt", "instruction")
    notes: list[str] = field(default_factory=list)  # things worth telling the user (columns ignored, ...)
