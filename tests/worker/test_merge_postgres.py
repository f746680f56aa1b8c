"""Merge end to end in the production shape: PostgreSQL + Redis, a real worker process, the real trainer.

The merge tests in test_merge_task.py run on the embedded defaults (SQLite + filesystem broker); this
one proves the same path (claim, lease renewals, progress, the merged artifact recorded in the ending's
commit) holds on the stack people deploy, and that the result loads with transformers alone.
"""

from __future__ import annotations

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
def test_merge_on_postgresql_and_redis_equals_the_unmerged_outputs(request, tmp_path):
    pytest.importorskip("worker.training")
    with running_stack(request, tmp_path, "postgresql+redis", trainer="worker.training:run_training", STUDIO_LEASE_SECONDS="10") as stack:
        assert stack.settings.database_url.startswith("postgresql") and stack.settings.broker_url.startswith("redis://")
        job_id = stack.submit(name="merge on postgres", max_steps=4, checkpoint_every=4)
        job = stack.wait_status(job_id, "succeeded", "failed", timeout=300)
        assert job.status == "succeeded", f"{job.message}\n{job.log_tail}"
        with session_scope(stack.settings) as session:
            queued = merges.request_merge(session, job_id=job_id, settings=stack.settings)
            assert queued.merge_status in ("queued", "running", "succeeded")
            merges.ring_merge(job_id, stack.settings)  # a duplicate delivery through Redis: it must find nothing to do
        job = wait_for(lambda: _merge_ended(stack, job_id), timeout=240, what="the merge to end")
        log = stack.settings.jobs_dir / str(job_id) / "merging" / "merge.log"
        assert job.merge_status == "succeeded", f"{job.merge_message}\n{log.read_text() if log.exists() else ''}"
        assert job.merge_done == job.merge_total and job.merge_owner is None

        merged = [a for a in job.artifacts if a.kind == "merged"]
        assert len(merged) == 1, "a duplicate delivery must not record a second merged model"
        folder = Path(merged[0].path)
        assert (merged[0].size_bytes, merged[0].sha256) == describe_path(folder)
        assert {"config.json", "model.safetensors"} <= {e.path for e in list_files(folder)}

        import torch
        from transformers import AutoModelForCausalLM

        import peft_core
        from worker.training.demo import demo_model_dir

        adapter = next(a for a in job.artifacts if a.kind == "adapter")
        ids = torch.tensor([[1, 5, 9, 2, 7, 3, 11, 4]])
        base = AutoModelForCausalLM.from_pretrained(demo_model_dir(stack.settings.data_dir)).eval()
        with torch.no_grad():
            unmerged = peft_core.PeftModel.from_pretrained(base, adapter.path).eval()(ids).logits
            plain = AutoModelForCausalLM.from_pretrained(demo_model_dir(stack.settings.data_dir)).eval()(ids).logits
            got = AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits
        assert not torch.allclose(unmerged, plain, atol=1e-6), "the trained adapter must change the outputs, or the check proves nothing"
        torch.testing.assert_close(got, unmerged, rtol=1e-4, atol=1e-4)
