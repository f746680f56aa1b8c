"""End to end with the real trainer (worker.training.run_training) on the built-in demo model and data.

Skipped until the trainer is importable. Slower than the fake-trainer tests, still CPU-only and offline.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from app.db.session import session_scope
from app.services import metrics
from tests.support.stack import running_stack

pytestmark = pytest.mark.integration

REAL_TRAINER = "worker.training:run_training"


@pytest.fixture
def real_stack(request, tmp_path):
    training = pytest.importorskip("worker.training")
    if not hasattr(training, "run_training"):
        pytest.skip("worker.training.run_training is not there yet")
    with running_stack(request, tmp_path, "sqlite+filesystem", trainer=REAL_TRAINER, STUDIO_LEASE_SECONDS="10") as stack:
        yield stack


def _metrics(stack, job_id):
    with session_scope(stack.settings) as session:
        return metrics.metrics_since(session, job_id=job_id)


def test_demo_job_trains_and_saves_a_peft_adapter(real_stack):
    job_id = real_stack.submit(name="real demo", max_steps=6, checkpoint_every=3)
    job = real_stack.wait_status(job_id, "succeeded", "failed", timeout=300)
    assert job.status == "succeeded", f"{job.message}\n{job.error_hint}\n{job.log_tail}"
    rows = _metrics(real_stack, job_id)
    assert sorted({r.step for r in rows}) == list(range(1, 7))
    assert all(r.loss is not None and r.lr is not None for r in rows if r.loss is not None)
    [adapter] = job.artifacts
    folder = Path(adapter.path)
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("base_model.model.") for k in keys)


def test_real_run_killed_mid_way_resumes_from_its_checkpoint(real_stack):
    job_id = real_stack.submit(name="real resume", max_steps=12, checkpoint_every=4)
    job = real_stack.wait_job(job_id, lambda j: j.last_checkpoint_step and j.status == "running", what="a first checkpoint", timeout=240)
    os.kill(job.worker_pid, signal.SIGKILL)
    job = real_stack.wait_status(job_id, "succeeded", "failed", timeout=300)
    assert job.status == "succeeded", f"{job.message}\n{job.log_tail}"
    assert job.attempt == 2
    steps = [r.step for r in _metrics(real_stack, job_id) if r.loss is not None]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # one row per step, the curve continues
