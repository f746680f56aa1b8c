"""A run whose method cannot merge (prompt learning) offers no merge: the button is hidden, the request refused in words."""

from __future__ import annotations

import pytest

from app.services import jobs, merges
from app.services.jobs import ArtifactKind, JobStateError
from app.ui import merge_panel


def finished_run(session, studio, method: dict) -> int:
    """A succeeded run of `method` with a saved adapter folder (through the real claim/finish path)."""
    job = jobs.create_job(session, spec={"base_model": "demo", "method": method, "training": {"max_steps": 6}})
    claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30)
    folder = studio.jobs_dir / str(job.id) / "train" / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=folder)
    jobs.finish_job(session, job_id=claim.job_id, owner="w", status=jobs.JobStatus.SUCCEEDED, message="done")
    return job.id


@pytest.mark.parametrize(("peft_type", "title"), [("PROMPT_TUNING", "Prompt tuning"), ("PREFIX_TUNING", "Prefix tuning"), ("P_TUNING", "P-tuning")])
def test_a_prompt_learning_run_offers_no_merge(session, studio, peft_type, title):
    job_id = finished_run(session, studio, {"peft_type": peft_type, "num_virtual_tokens": 4})
    assert not merge_panel.can_merge(jobs.get_job(session, job_id=job_id))
    with pytest.raises(JobStateError, match=f"run {job_id} trained {title} adapters, which cannot be merged .* use the adapter with the base model"):
        merges.request_merge(session, job_id=job_id)
    assert jobs.get_job(session, job_id=job_id).merge_status is None  # nothing was queued


def test_a_lora_run_still_offers_its_merge(session, studio):
    job_id = finished_run(session, studio, {"peft_type": "LORA", "r": 4})
    assert merge_panel.can_merge(jobs.get_job(session, job_id=job_id))
