"""Fixtures for the trainer's tests: the demo model (built once and cached), small datasets, recording hooks.

The demo model is built into pytest's cache folder (.pytest_cache/d/studio-demo), keyed by its recipe
fingerprint, so only the first test session after a change to the demo pays for the build. Torch runs
on one thread here: on a busy 2-core machine, two spin-waiting threads made these tests 10x slower.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.training.hooks import TrainHooks

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studio data dir holding the demo model; STUDIO_DATA_DIR points at it for the session."""
    try:
        folder = Path(request.config.cache.mkdir("studio-demo"))
    except (AttributeError, OSError):  # cache plugin off (-p no:cacheprovider)
        folder = tmp_path_factory.mktemp("studio-data")
    from worker.training.demo import ensure_demo_model

    ensure_demo_model(folder, log=lambda _line: None)
    previous = os.environ.get("STUDIO_DATA_DIR")
    os.environ["STUDIO_DATA_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("STUDIO_DATA_DIR", None)
    else:
        os.environ["STUDIO_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def demo_folder(data_dir: Path) -> Path:
    from worker.training.demo import demo_model_dir

    return demo_model_dir(data_dir)


@pytest.fixture(scope="session")
def demo_tokenizer(demo_folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_folder)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a str row is written as the raw line (to make bad lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class Recorder:
    """TrainHooks that remember every call; `stop_before` makes should_stop say yes before that step."""

    stop_before: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)

    def hooks(self) -> TrainHooks:
        def on_metrics(rows: list[dict[str, Any]]) -> None:
            self.batches.append(len(rows))
            self.metrics.extend(rows)

        def should_stop() -> bool:
            done = self.progress[-1][0] if self.progress else 0
            return self.stop_before is not None and done + 1 >= self.stop_before

        return TrainHooks(
            on_metrics=on_metrics,
            on_checkpoint=lambda folder, step: self.checkpoints.append((folder, step)),
            on_log=self.logs.append,
            on_progress=lambda step, total: self.progress.append((step, total)),
            should_stop=should_stop,
        )

    def losses(self) -> dict[int, float]:
        return {row["step"]: row["loss"] for row in self.metrics}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def demo_spec(**training: Any) -> dict[str, Any]:
    """A small demo job: few steps, tiny eval set, so a run takes a second or two."""
    base = {"max_steps": 4, "batch_size": 4, "eval_fraction": 0.02, "eval_every": 100, "checkpoint_every": 100, "log_every": 1}
    return {"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "demo"}, "training": {**base, **training}}


@pytest.fixture
def make_spec() -> Callable[..., dict[str, Any]]:
    return demo_spec
