"""End to end: two finished demo runs combined by a real worker process, through the combine child, into an
adapter whose outputs equal peft's add_weighted_adapter on the same two adapters and that merges like any
run's; a dead worker's combination ends failed in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.session import session_scope
from app.services import artifacts, combining, merges
from tests.support.stack import running_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REAL_TRAINER = "worker.training:run_training"


def _finished_pair(stack) -> tuple[int, int]:
    """Two LoRA runs on the demo model that differ (seed, alpha), so the combination is not of two equal adapters."""
    a = stack.submit(name="a", method={"peft_type": "LORA", "r": 4, "lora_alpha": 8}, training={"max_steps": 4, "seed": 1})
    b = stack.submit(name="b", method={"peft_type": "LORA", "r": 4, "lora_alpha": 16}, training={"max_steps": 4, "seed": 2})
    for job_id in (a, b):
        job = stack.wait_status(job_id, "succeeded", "failed", timeout=300)
        assert job.status == "succeeded", f"{job.message}\n{job.log_tail}"
    return a, b


def _merge_ended(stack, job_id: int):
    job = stack.job(job_id)
    return job if job.merge_status in ("succeeded", "failed") else None


def _adapter_path(stack, job_id: int) -> str:
    return next(a.path for a in stack.job(job_id).artifacts if a.kind == "adapter")


def _peft_logits(base_dir: Path, paths: list[str], weights: list[float], ids, **kwargs):
    """The oracle: peft loads both trained adapters, combines them and runs the combination."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), paths[0], adapter_name="s0")
    for i, path in enumerate(paths[1:], start=1):
        model.load_adapter(path, adapter_name=f"s{i}")
    model.add_weighted_adapter([f"s{i}" for i in range(len(paths))], weights, "combined", **kwargs)
    model.set_adapter("combined")
    with torch.no_grad():
        return model.eval()(ids).logits


def _ours_logits(base_dir: Path, path: str, ids):
    import torch
    from transformers import AutoModelForCausalLM

    import peft_core

    with torch.no_grad():
        return peft_core.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), path).eval()(ids).logits


CASES = [
    ("cat", {}),
    ("ties", {"density": 0.6, "majority_sign_method": "total"}),
    ("svd", {"svd_rank": 3}),
]


@pytest.mark.timeout(900)
def test_combined_adapters_from_the_worker_equal_peft(request, tmp_path):
    pytest.importorskip("peft")
    import torch

    from peft_core.tuners.lora.combine import COMBINATIONS
    from worker.training.demo import demo_model_dir

    assert combining.COMBINATION_TYPES == COMBINATIONS, "the web side's list must name what the engine accepts"
    with running_stack(request, tmp_path, "sqlite+filesystem", trainer=REAL_TRAINER, STUDIO_LEASE_SECONDS="10") as stack:
        a, b = _finished_pair(stack)
        weights = [0.7, 0.5]
        asked = {}
        with session_scope(stack.settings) as session:
            for kind, knobs in CASES:
                job = combining.request_combine(session, run_ids=[a, b], weights=weights, combination_type=kind, name=f"{kind} of a and b",
                                                settings=stack.settings, **knobs)
                asked[kind] = job.id
                combining.ring_combine(job.id, stack.settings)  # a duplicate delivery: the claim lets one through
        ids = torch.tensor([[1, 5, 9, 2, 7, 3, 11, 4]])
        base_dir = demo_model_dir(stack.settings.data_dir)
        paths = [_adapter_path(stack, a), _adapter_path(stack, b)]
        for kind, knobs in CASES:
            job = stack.wait_status(asked[kind], "succeeded", "failed", timeout=240)
            log = stack.settings.jobs_dir / str(job.id) / "combine" / "combine.log"
            assert job.status == "succeeded", f"{job.message}\n{log.read_text() if log.exists() else ''}"
            assert job.message.startswith(f"Combined #{a} × 0.7, #{b} × 0.5 with {kind} into a rank-")
            adapters = [x for x in job.artifacts if x.kind == "adapter"]
            assert len(adapters) == 1, "one adapter per combination, even with a duplicate delivery"
            folder = Path(adapters[0].path)
            assert folder == combining.combined_dir(stack.settings, job.id)
            assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
            assert artifacts.zip_checksum(folder, limit=0) is not None, "the worker stores the download's checksum once"
            expected = _peft_logits(base_dir, paths, weights, ids, combination_type=kind, **knobs)
            got = _ours_logits(base_dir, str(folder), ids)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        cat_dir = str(combining.combined_dir(stack.settings, asked["cat"]))
        combined = _ours_logits(base_dir, cat_dir, ids)
        assert not torch.allclose(_ours_logits(base_dir, paths[0], ids), combined, atol=1e-5)

        # A combination is merged like any run: into a model transformers loads alone, with the combination's outputs.
        from transformers import AutoModelForCausalLM

        with session_scope(stack.settings) as session:
            merges.request_merge(session, job_id=asked["cat"], settings=stack.settings)
        job = wait_for(lambda: _merge_ended(stack, asked["cat"]), timeout=240, what="the merge of the combination")
        assert job.merge_status == "succeeded", job.merge_message
        with torch.no_grad():
            merged = AutoModelForCausalLM.from_pretrained(merges.merged_dir(stack.settings, job.id)).eval()(ids).logits
        torch.testing.assert_close(merged, combined, rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("shape", ["sqlite+filesystem", "postgresql+redis"])
def test_a_combination_whose_worker_dies_ends_failed_in_words(request, tmp_path, shape):
    from tests.support.processes import wait_gone

    with running_stack(request, tmp_path, shape) as stack:  # the fake trainer: the sources only need to exist
        a, b = stack.submit(name="a", max_steps=2), stack.submit(name="b", max_steps=2)
        for job_id in (a, b):
            assert stack.wait_status(job_id, "succeeded", "failed").status == "succeeded"
        with session_scope(stack.settings) as session:
            asked = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=stack.settings).id
        running = stack.wait_job(asked, lambda j: j.status == "running" and j.worker_pid, what="the combine child to start")
        stack.workers[0].kill()  # SIGKILL: nobody renews the lease; the child exits with its parent
        wait_gone(running.worker_pid)
        stack.add_worker()  # its reaper finds the expired lease
        job = stack.wait_status(asked, "failed", "succeeded", "cancelled", timeout=60)
        assert job.status == "failed" and "stopped responding" in job.message, job.message
        assert job.lease_owner is None and not [x for x in job.artifacts if x.kind == "adapter"]
        assert stack.job(a).status == stack.job(b).status == "succeeded", "the source runs are untouched"
