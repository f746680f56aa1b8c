"""A stand-in for worker.training.run_training, for fast reliability tests (STUDIO_TRAINER=tests.worker.fake_trainer:run_training).

Same interface and hook calls as the real trainer, no torch: each step sleeps, reports a metric row,
progress and a log line, polls should_stop, and checkpoints every training.checkpoint_every steps
(a JSON file with the step, enough to resume). Behaviour switches come from the job name, so each test
job says what it wants: "delay=0.05" seconds per step, "hang" (ignore should_stop), "fail" (a
TrainingError at step 2), "crash" (an unexpected exception at step 2), "pause_at=N" (the first run
waits after step N until it is killed or cancelled, so a test can kill it at a known point).

It also keeps evidence for the tests in the work folder: runs.jsonl (one line per run: pid, start
step) and OVERLAP if it ever found another run of the same job still holding its lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from worker.training.errors import TrainingError
from worker.training.hooks import TrainHooks, TrainingCancelled


def _switches(name: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in (name or "").split():
        key, _, value = token.partition("=")
        out[key] = value
    return out


def run_training(spec: dict[str, Any], work_dir: Path, hooks: TrainHooks, resume_from: Path | None = None) -> dict[str, Any]:
    work_dir.mkdir(parents=True, exist_ok=True)
    lock = (work_dir / "fake.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        (work_dir / "OVERLAP").write_text(f"pid {os.getpid()} started while another run held the lock\n")
        raise
    knobs = _switches(spec.get("name"))
    delay = float(knobs.get("delay", "0.02"))
    training = spec["training"]
    total = int(training.get("max_steps") or 10)
    every = int(training["checkpoint_every"])
    if spec["dataset"]["source"] == "jsonl" and not Path(spec["dataset"]["path"]).is_file():
        raise TrainingError(f"dataset file {spec['dataset']['path']} does not exist on the worker")
    start = json.loads((resume_from / "state.json").read_text())["step"] if resume_from else 0
    first_run = not (work_dir / "runs.jsonl").exists()
    with (work_dir / "runs.jsonl").open("a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "start_step": start}) + "\n")
    hooks.on_log(f"fake trainer: steps {start + 1}..{total}")
    loss = None
    for step in range(start + 1, total + 1):
        if hooks.should_stop() and "hang" not in knobs:
            raise TrainingCancelled(f"stopped at step {step - 1}")
        time.sleep(delay)
        if step == 2 and "fail" in knobs:
            raise TrainingError("dataset row 7 has no 'messages' field")
        if step == 2 and "crash" in knobs:
            raise KeyError("boom")
        loss = 3.0 / step
        hooks.on_metrics([{"step": step, "epoch": step / total, "loss": loss, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 100.0}])
        hooks.on_progress(step, total)
        hooks.on_log(f"step {step} loss {loss:.3f}")
        if step % every == 0:
            folder = work_dir / "checkpoints" / f"step-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "state.json").write_text(json.dumps({"step": step}))
            hooks.on_checkpoint(str(folder), step)
        if first_run and step == int(knobs.get("pause_at", 0)):
            while not hooks.should_stop():  # keeps the reporter flushing while it waits
                time.sleep(0.05)
            raise TrainingCancelled(f"stopped while paused at step {step}")
    adapter = work_dir / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": spec["method"]["peft_type"]}))
    (adapter / "adapter_model.safetensors").write_bytes(b"fake weights")
    return {"adapter_dir": str(adapter), "final_loss": loss, "final_eval_loss": None, "steps": total}
