"""End to end: a finished demo run merged by a real worker process, through the merge child, into a folder
that transformers loads alone and that gives the same logits as base + adapter in peft_core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.db.session import session_scope
from app.services import merges
from app.services.artifact_files import list_files
from app.services.files import describe_path
from tests.support.stack import running_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _merge_ended(stack, job_id):
    job = stack.job(job_id)
    return job if job.merge_status in ("succeeded", "failed") else None


@pytest.mark.timeout(600)
def test_a_finished_demo_run_merges_into_a_model_transformers_loads(request, tmp_path):
    pytest.importorskip("worker.training")
    with running_stack(request, tmp_path, "sqlite+filesystem", trainer="worker.training:run_training", STUDIO_LEASE_SECONDS="10") as stack:
        job_id = stack.submit(name="to merge", max_steps=4, checkpoint_every=4)
        job = stack.wait_status(job_id, "succeeded", "failed", timeout=300)
        assert job.status == "succeeded", f"{job.message}\n{job.log_tail}"
        with session_scope(stack.settings) as session:
            merges.request_merge(session, job_id=job_id, settings=stack.settings)
            merges.ring_merge(job_id, stack.settings)  # a duplicate delivery: it must find nothing to do
        job = wait_for(lambda: _merge_ended(stack, job_id), timeout=240, what="the merge to end")
        log = (stack.settings.jobs_dir / str(job_id) / "merging" / "merge.log")
        assert job.merge_status == "succeeded", f"{job.merge_message}\n{log.read_text() if log.exists() else ''}"
        assert job.merge_done == job.merge_total == 1 and "Merged" in job.merge_message

        merged = [a for a in job.artifacts if a.kind == "merged"]
        assert len(merged) == 1
        folder = Path(merged[0].path)
        assert folder == merges.merged_dir(stack.settings, job_id)
        assert (merged[0].size_bytes, merged[0].sha256) == describe_path(folder)
        names = {e.path for e in list_files(folder)}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
        assert json.loads((folder.with_name("merged.files.json")).read_text())

        import torch
        from transformers import AutoModelForCausalLM

        import peft_core
        from worker.training.demo import demo_model_dir

        adapter = next(a for a in job.artifacts if a.kind == "adapter")
        ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
        base = AutoModelForCausalLM.from_pretrained(demo_model_dir(stack.settings.data_dir)).eval()
        with torch.no_grad():
            expected = peft_core.PeftModel.from_pretrained(base, adapter.path).eval()(ids).logits
            got = AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_merge_that_cannot_succeed_ends_failed_with_a_message_in_words(request, tmp_path):
    with running_stack(request, tmp_path, "sqlite+filesystem", HF_HUB_OFFLINE="1") as stack:
        job_id = stack.submit(name="hub base, offline", max_steps=2, base_model="no-such-org/no-such-model")
        assert stack.wait_status(job_id, "succeeded", "failed").status == "succeeded"
        with session_scope(stack.settings) as session:
            merges.request_merge(session, job_id=job_id, settings=stack.settings)
        job = wait_for(lambda: _merge_ended(stack, job_id), timeout=120, what="the merge to end")
        assert job.merge_status == "failed"
        assert "not downloaded on this worker" in job.merge_message and "offline" in job.merge_message
        assert not [a for a in job.artifacts if a.kind == "merged"] and job.merge_owner is None
