"""The real trainer, made to wait after its first checkpoint on the first run of a job named "pause ...".

So a test can SIGKILL a real run at a known point (STUDIO_TRAINER=tests.worker.pausing_trainer:run_training).
The resumed run (or any later run of the job) does not pause. While waiting it keeps polling should_stop,
which keeps the reporter flushing and honours a cancel.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from worker.training import run_training as real_run_training
from worker.training.hooks import TrainHooks


def run_training(spec: dict[str, Any], work_dir: Path, hooks: TrainHooks, resume_from: Path | None = None) -> dict[str, Any]:
    marker = Path(work_dir) / "paused-once"
    if resume_from is not None or marker.exists() or not (spec.get("name") or "").startswith("pause"):
        return real_run_training(spec, work_dir, hooks, resume_from)

    def on_checkpoint(folder: str, step: int) -> None:
        hooks.on_checkpoint(folder, step)
        if not marker.exists():
            marker.write_text(str(step))
            while not hooks.should_stop():
                time.sleep(0.05)

    return real_run_training(spec, work_dir, dataclasses.replace(hooks, on_checkpoint=on_checkpoint), resume_from)
