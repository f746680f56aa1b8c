"""app.services.runs and app.services.artifacts on SQLite and PostgreSQL: summaries, clone, delete, downloads."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from app.db.models import Metric
from app.services import artifacts, jobs, runs
from app.services.jobs import ArtifactKind, JobStateError, JobStatus

SPEC = {"name": "summary run", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 10}}


def _run_to_the_end(session, studio, steps=10):
    job = jobs.create_job(session, spec=SPEC)
    claim = jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=60)
    rows = [{"step": s, "loss": 3.0 - 0.1 * s, "lr": 1e-4} for s in range(1, steps + 1)] + [{"step": 10, "eval_loss": 2.5}]
    jobs.record_metrics(session, job_id=job.id, rows=rows, owner=claim.owner)
    jobs.record_progress(session, job_id=job.id, owner=claim.owner, step=steps, total=10)
    adapter = studio.jobs_dir / str(job.id) / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 5000)
    jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=adapter)
    jobs.finish_job(session, job_id=job.id, owner=claim.owner, status=JobStatus.SUCCEEDED, message="Done.")
    return job


def test_summary_has_last_losses_trace_and_duration(session, studio):
    job = _run_to_the_end(session, studio)
    [summary] = runs.list_runs(session)
    assert summary.id == job.id and summary.status == "succeeded"
    assert summary.last_loss == pytest.approx(2.0) and summary.last_eval_loss == pytest.approx(2.5)
    assert summary.loss_trace[0] == pytest.approx(2.9) and len(summary.loss_trace) == 10
    assert summary.fraction == 1.0 and summary.duration_seconds is not None and summary.eta_seconds is None
    assert runs.count_by_status(session) == {"succeeded": 1}


def test_running_summary_has_an_eta(session, studio):
    job = jobs.create_job(session, spec=SPEC)
    claim = jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=60)
    jobs.record_metrics(session, job_id=job.id, rows=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}], owner=claim.owner)
    jobs.record_progress(session, job_id=job.id, owner=claim.owner, step=2, total=10)
    summary, _ = runs.get_run(session, job_id=job.id)
    assert summary.status == "running" and summary.fraction == pytest.approx(0.2)
    assert jobs.get_job(session, job_id=job.id).message == "Training: step 2 of 10."
    assert summary.eta_seconds is None  # one batch of rows: too soon to tell
    # from step 1 to step 10 in 4 seconds: 4/9 s per step
    first = session.scalar(select(Metric.created_at).where(Metric.job_id == job.id, Metric.step == 1))
    later = first + timedelta(seconds=4)  # from the stored row, not the clock: a busy machine must not move the rate
    session.execute(insert(Metric), [{"job_id": job.id, "step": 10, "loss": 1.0, "created_at": later}])
    session.commit()
    summary, _ = runs.get_run(session, job_id=job.id)
    assert summary.seconds_per_step == pytest.approx(4 / 9, rel=0.05)
    jobs.record_progress(session, job_id=job.id, owner=claim.owner, step=6, total=10)
    summary, _ = runs.get_run(session, job_id=job.id)
    assert summary.eta_seconds == pytest.approx(4 * 4 / 9, rel=0.05)


def test_clone_spec_copies_the_config_under_a_new_name(session, studio):
    job = _run_to_the_end(session, studio)
    spec = runs.clone_spec(session, job_id=job.id)
    assert spec["name"] == "Copy of summary run"
    assert spec["method"]["r"] == 4 and spec["training"]["max_steps"] == 10
    assert jobs.create_job(session, spec=spec).id != job.id


def test_delete_refuses_a_live_run_and_removes_a_finished_one_with_its_files(session, studio):
    live = jobs.create_job(session, spec=SPEC)
    with pytest.raises(JobStateError, match="cancel it first"):
        runs.delete_run(session, job_id=live.id, settings=studio)
    done = _run_to_the_end(session, studio)
    folder = studio.jobs_dir / str(done.id)
    assert folder.exists()
    runs.delete_run(session, job_id=done.id, settings=studio)
    assert not folder.exists()
    assert [r.id for r in runs.list_runs(session)] == [live.id]


def test_adapter_folder_downloads_as_a_zip(session, studio):
    job = _run_to_the_end(session, studio)
    artifact = artifacts.latest_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER)
    download = artifacts.prepare_download(artifact, job_id=job.id)
    assert download.zipped and download.filename == f"run-{job.id}-adapter.zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(artifacts.iter_zip(download.path))))
    assert sorted(archive.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert archive.read("adapter_model.safetensors") == b"\0" * 5000
    with pytest.raises(artifacts.ArtifactNotFound):
        artifacts.get_artifact(session, job_id=job.id + 1, artifact_id=artifact.id)
