"""app.services.merges on SQLite and PostgreSQL: refusals in words, one merge at a time, owner-fenced endings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import Job
from app.services import jobs, merges
from app.services.artifact_files import describe_folder, list_files, resolve_file
from app.services.files import describe_path
from app.services.jobs import ArtifactKind, JobStateError
from tests.support.broker_messages import queued_messages

SPEC = {"base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 6}}


def finished_run(session, studio, *, adapter: bool = True) -> int:
    """A run that succeeded (through the real claim/finish path), with a saved adapter folder."""
    job = jobs.create_job(session, spec=SPEC)
    claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30)
    if adapter:
        folder = studio.jobs_dir / str(job.id) / "train" / "adapter"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=folder)
    jobs.finish_job(session, job_id=claim.job_id, owner="w", status=jobs.JobStatus.SUCCEEDED, message="done")
    return job.id


def test_refuses_a_run_that_did_not_succeed(session, studio):
    job = jobs.create_job(session, spec=SPEC)
    with pytest.raises(JobStateError, match="is queued; only a run that succeeded can be merged"):
        merges.request_merge(session, job_id=job.id)
    with pytest.raises(jobs.JobNotFound):
        merges.request_merge(session, job_id=job.id + 1)


def test_refuses_a_run_without_an_adapter(session, studio):
    job_id = finished_run(session, studio, adapter=False)
    with pytest.raises(JobStateError, match="no saved adapter"):
        merges.request_merge(session, job_id=job_id)


def test_request_rings_by_name_and_one_merge_at_a_time(session, studio):
    job_id = finished_run(session, studio)
    job = merges.request_merge(session, job_id=job_id)
    assert (job.merge_status, job.merge_message) == ("queued", "Waiting for a worker to merge.")
    assert ("studio.merge", [job_id]) in queued_messages(studio)
    assert merges.request_merge(session, job_id=job_id).merge_status == "queued"  # asking again sends the message again
    assert queued_messages(studio).count(("studio.merge", [job_id])) == 2
    assert merges.claim_merge(session, job_id=job_id, owner="a", lease_seconds=30)
    assert not merges.claim_merge(session, job_id=job_id, owner="b", lease_seconds=30)  # a duplicate delivery
    with pytest.raises(JobStateError, match="already being merged"):
        merges.request_merge(session, job_id=job_id)
    assert not merges.record_merge_progress(session, job_id=job_id, owner="b", done=1, total=2)
    assert merges.record_merge_progress(session, job_id=job_id, owner="a", done=1, total=2)
    assert jobs.get_job(session, job_id=job_id).merge_message == "Merging: shard 1 of 2 written."
    # its worker vanished: once the lease expired the merge may be asked again, and the old owner is fenced off
    assert not merges.worker_vanished(jobs.get_job(session, job_id=job_id))
    session.execute(update(Job).where(Job.id == job_id).values(merge_lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert merges.worker_vanished(jobs.get_job(session, job_id=job_id))
    assert merges.request_merge(session, job_id=job_id).merge_status == "queued"
    assert not merges.finish_merge(session, job_id=job_id, owner="a", ok=False, message="late")


def test_finish_records_the_merged_folder_with_sizes_and_hashes(session, studio):
    job_id = finished_run(session, studio)
    merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=job_id, owner="a", lease_seconds=30)
    folder = merges.merged_dir(studio, job_id)
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "model.safetensors").write_bytes(b"x" * 1000)
    assert merges.finish_merge(session, job_id=job_id, owner="a", ok=True, message="Merged.", folder=folder)
    job = jobs.get_job(session, job_id=job_id)
    [artifact] = [a for a in job.artifacts if a.kind == "merged"]
    assert (job.merge_status, job.merge_owner) == ("succeeded", None)
    assert (artifact.size_bytes, artifact.sha256) == describe_path(folder) == describe_folder(folder)
    assert [(e.path, e.size_bytes) for e in list_files(folder)] == [("config.json", 8), ("sub/model.safetensors", 1000)]
    assert resolve_file(folder, "sub/model.safetensors") == (folder / "sub" / "model.safetensors").resolve()
    assert resolve_file(folder, "../../studio.db") is None and resolve_file(folder, "missing") is None
    assert merges.request_merge(session, job_id=job_id).merge_status == "queued"  # merging again is allowed


def test_reaper_fails_merges_whose_worker_died_and_resends_lost_ones(session, studio):
    dead, lost, live = (finished_run(session, studio) for _ in range(3))
    for job_id in (dead, lost, live):
        merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=dead, owner="gone", lease_seconds=-1)
    merges.claim_merge(session, job_id=live, owner="alive", lease_seconds=30)
    past = utcnow() - timedelta(seconds=studio.redeliver_after_seconds + 1)
    session.execute(update(Job).where(Job.id == lost).values(updated_at=past))
    session.commit()
    before = queued_messages(studio).count(("studio.merge", [lost]))
    assert merges.reap_merges(session, settings=studio) == ([dead], [lost])
    assert queued_messages(studio).count(("studio.merge", [lost])) == before + 1
    gone = jobs.get_job(session, job_id=dead)
    assert (gone.merge_status, gone.merge_message, gone.merge_owner) == ("failed", merges.WORKER_GONE, None)
    assert jobs.get_job(session, job_id=live).merge_status == "running"
    assert merges.reap_merges(session, settings=studio) == ([], [])  # nothing twice
