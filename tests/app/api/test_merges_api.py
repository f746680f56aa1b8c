"""POST /api/jobs/{id}/merge and the listing and download of a merged model's files, over the real services."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.services import jobs, merges
from tests.app.services.test_merges import SPEC, finished_run
from tests.support.broker_messages import queued_messages


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


def test_merge_endpoint_refuses_in_words_then_queues(client, session, studio):
    assert client.post("/api/jobs/999/merge").status_code == 404
    queued = jobs.create_job(session, spec=SPEC)
    refused = client.post(f"/api/jobs/{queued.id}/merge")
    assert refused.status_code == 409 and "only a run that succeeded" in refused.json()["detail"]
    job_id = finished_run(session, studio)
    accepted = client.post(f"/api/jobs/{job_id}/merge")
    assert accepted.status_code == 202
    assert accepted.json() == {"job_id": job_id, "merge_status": "queued", "merge_message": "Waiting for a worker to merge.",
                               "merge_done": 0, "merge_total": None}
    assert ("studio.merge", [job_id]) in queued_messages(studio)
    assert client.post(f"/api/jobs/{job_id}/merge").status_code == 202  # while queued: sent again
    merges.claim_merge(session, job_id=job_id, owner="w", lease_seconds=30)
    busy = client.post(f"/api/jobs/{job_id}/merge")
    assert busy.status_code == 409 and "already being merged" in busy.json()["detail"]
    assert client.get(f"/api/jobs/{job_id}").json()["merge_status"] == "running"


def test_merged_files_are_listed_with_sizes_and_sha256_and_download(client, session, studio):
    job_id = finished_run(session, studio)
    merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=job_id, owner="w", lease_seconds=30)
    folder = merges.merged_dir(studio, job_id)
    folder.mkdir(parents=True)
    shard = bytes(range(256)) * 40
    (folder / "model.safetensors").write_bytes(shard)
    (folder / "config.json").write_text("{}")
    merges.finish_merge(session, job_id=job_id, owner="w", ok=True, message="Merged.", folder=folder)

    listing = client.get(f"/api/jobs/{job_id}/artifacts").json()
    merged = next(a for a in listing if a["kind"] == "merged")
    files = {f["path"]: f for f in merged["files"]}
    assert set(files) == {"config.json", "model.safetensors"}
    assert files["model.safetensors"]["size_bytes"] == len(shard)
    assert files["model.safetensors"]["sha256"] == hashlib.sha256(shard).hexdigest()

    got = client.get(files["model.safetensors"]["url"])
    assert got.status_code == 200 and got.content == shard and got.headers["content-length"] == str(len(shard))
    assert client.get(f"/api/jobs/{job_id}/artifacts/{merged['id']}/files/../../studio.db").status_code == 404
    archive = zipfile.ZipFile(io.BytesIO(client.get(merged["download_url"]).content))
    assert archive.read("model.safetensors") == shard and sorted(archive.namelist()) == ["config.json", "model.safetensors"]
