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


def _real_stack(request, folder: Path, trainer: str):
    training = pytest.importorskip("worker.training")
    if not hasattr(training, "run_training"):
        pytest.skip("worker.training.run_training is not there yet")
    return running_stack(request, folder, "sqlite+filesystem", trainer=trainer, STUDIO_LEASE_SECONDS="10")


def _losses(stack, job_id) -> dict[int, float]:
    with session_scope(stack.settings) as session:
        return {r.step: r.loss for r in metrics.metrics_since(session, job_id=job_id) if r.loss is not None}


def test_demo_job_trains_and_saves_a_peft_adapter(request, tmp_path):
    with _real_stack(request, tmp_path, "worker.training:run_training") as stack:
        job_id = stack.submit(name="real demo", max_steps=6, checkpoint_every=3)
        job = stack.wait_status(job_id, "succeeded", "failed", timeout=300)
        assert job.status == "succeeded", f"{job.message}\n{job.error_hint}\n{job.log_tail}"
        assert sorted(_losses(stack, job_id)) == list(range(1, 7))
        with session_scope(stack.settings) as session:
            shares = [r.padding_share for r in metrics.metrics_since(session, job_id=job_id) if r.loss is not None]
        assert shares and all(s is not None and 0 <= s < 1 for s in shares), f"stored padding shares: {shares}"
        [adapter] = job.artifacts
        folder = Path(adapter.path)
        assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
        from safetensors import safe_open

        with safe_open(str(folder / "adapter_model.safetensors"), "pt") as fh:
            keys = list(fh.keys())
        assert keys and all(k.startswith("base_model.model.") for k in keys)
        _loads_in_peft_core_and_peft(folder, stack.settings.data_dir)


def _loads_in_peft_core_and_peft(adapter: Path, data_dir: Path) -> None:
    """The job's adapter gives the same outputs in peft_core and in peft (the test-only oracle), and they
    differ from the bare demo model."""
    import torch
    from transformers import AutoModelForCausalLM

    import peft_core
    from worker.training.demo import demo_model_dir

    peft = pytest.importorskip("peft")
    base_dir = demo_model_dir(Path(data_dir))
    ids = torch.tensor([[5, 9, 14, 3, 27, 8]])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits
        ours = peft_core.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter)(ids).logits
        theirs = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter)(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, plain)


@pytest.mark.timeout(900)
def test_a_real_run_killed_mid_way_resumes_and_continues_the_same_loss_curve(request, tmp_path):
    with _real_stack(request, tmp_path, "tests.worker.pausing_trainer:run_training") as stack:
        spec = {"max_steps": 8, "checkpoint_every": 4}
        killed = stack.submit(name="pause after the first checkpoint", **spec)
        job = stack.wait_job(killed, lambda j: j.last_checkpoint_step == 4 and j.worker_pid, what="its first checkpoint", timeout=240)
        os.kill(job.worker_pid, signal.SIGKILL)
        job = stack.wait_status(killed, "succeeded", "failed", timeout=300)
        assert job.status == "succeeded" and job.attempt == 2, f"{job.message}\n{job.log_tail}"
        straight = stack.submit(name="straight", **spec)  # the same job, never interrupted
        stack.wait_status(straight, "succeeded", timeout=300)
        resumed, reference = _losses(stack, killed), _losses(stack, straight)
        assert sorted(resumed) == list(range(1, 9))
        assert resumed == pytest.approx(reference, rel=1e-4)
