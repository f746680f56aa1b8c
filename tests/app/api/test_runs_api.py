"""Run summaries, deletion and artifact downloads over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.db.session import session_scope
from app.services import jobs
from app.services.jobs import ArtifactKind, JobStatus

SPEC = {"name": "api run", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 3}}


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


def _finished_job_with_adapter(studio) -> tuple[int, int, int]:
    """A succeeded job with an adapter folder and a single-file artifact; returns (job, folder artifact, file artifact)."""
    with session_scope(studio) as session:
        job = jobs.create_job(session, spec=SPEC, settings=studio)
        claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=60)
        jobs.record_metrics(session, job_id=job.id, rows=[{"step": s, "loss": 2.0 / s, "lr": 1e-4} for s in (1, 2, 3)], owner="w")
        jobs.record_progress(session, job_id=job.id, owner="w", step=3, total=3)
        folder = studio.jobs_dir / str(job.id) / "adapter"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
        (folder / "adapter_model.safetensors").write_bytes(b"x" * 3_000_000)
        single = studio.jobs_dir / str(job.id) / "notes.txt"
        single.write_text("hello")
        a1 = jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=folder)
        a2 = jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.BUNDLE, path=single)
        jobs.finish_job(session, job_id=job.id, owner=claim.owner, status=JobStatus.SUCCEEDED, message="Done.")
        return job.id, a1.id, a2.id


def test_adapter_folder_downloads_as_a_streamed_zip(client, studio):
    job_id, folder_id, file_id = _finished_job_with_adapter(studio)
    response = client.get(f"/api/jobs/{job_id}/artifacts/{folder_id}/download")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert f'filename="run-{job_id}-adapter.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert len(archive.read("adapter_model.safetensors")) == 3_000_000
    single = client.get(f"/api/jobs/{job_id}/artifacts/{file_id}/download")
    assert single.content == b"hello" and single.headers["content-length"] == "5"
    assert client.get(f"/api/jobs/{job_id}/artifacts/999/download").status_code == 404
    assert client.get(f"/api/jobs/{job_id + 1}/artifacts/{folder_id}/download").status_code == 404


def test_summary_and_delete(client, studio):
    job_id, _, _ = _finished_job_with_adapter(studio)
    summary = client.get(f"/api/jobs/{job_id}/summary").json()
    assert summary["status"] == "succeeded" and summary["last_loss"] == pytest.approx(2.0 / 3) and summary["fraction"] == 1.0
    live = client.post("/api/jobs", json=SPEC).json()
    refused = client.delete(f"/api/jobs/{live['id']}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert not (studio.jobs_dir / str(job_id)).exists()
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.delete(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/jobs/{job_id}/summary").status_code == 404
