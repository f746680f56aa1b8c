"""Downloads list their size and sha256 before anyone downloads: the adapter zip is deterministic, its checksum
is computed once and stored, and the bytes the API sends hash to exactly what it showed."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.services import artifacts, jobs
from app.services.jobs import ArtifactKind


def _adapter(folder, payload: bytes = b"\x01\x02" * 5000):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(payload)
    (folder / "README.md").write_text("# adapter\n" * 50)
    return folder


def _zip_bytes(folder) -> bytes:
    return b"".join(artifacts.iter_zip(folder))


def test_the_same_adapter_zips_to_the_same_bytes_whatever_the_file_times(tmp_path):
    one, two = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    os.utime(two / "adapter_model.safetensors", (1_000_000_000, 1_000_000_000))
    os.utime(one / "README.md", (1_700_000_000, 1_700_000_000))
    first = _zip_bytes(one)
    assert first == _zip_bytes(two) == _zip_bytes(one)
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == sorted(names) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    (two / "README.md").write_text("changed\n")
    assert _zip_bytes(two) != first


def test_the_zip_checksum_is_stored_once_and_follows_changes(tmp_path):
    folder = _adapter(tmp_path / "adapter")
    checksum = artifacts.zip_checksum(folder)
    body = _zip_bytes(folder)
    assert checksum == artifacts.Checksum(len(body), hashlib.sha256(body).hexdigest())
    sidecar = artifacts.zip_sidecar(folder)
    assert sidecar.is_file() and checksum.sha256 in sidecar.read_text()
    assert not (folder / sidecar.name).exists(), "the stored checksum lives beside the folder, never inside the zip"
    assert artifacts.zip_checksum(folder, limit=0) == checksum  # stored: read back, even where hashing is not allowed
    (folder / "adapter_model.safetensors").write_bytes(b"\x07" * 10001)
    assert artifacts.zip_checksum(folder, limit=0) is None  # stale: not trusted, and too big to hash under this limit
    fresh = artifacts.zip_checksum(folder)
    assert fresh != checksum and fresh.sha256 == hashlib.sha256(_zip_bytes(folder)).hexdigest()


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


def test_the_api_shows_the_download_checksum_and_the_download_matches_it(client, session, studio):
    job = jobs.create_job(session, spec={"name": "sums", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}})
    folder = _adapter(studio.jobs_dir / str(job.id) / "train" / "adapter")
    adapter = jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=folder)
    single = studio.jobs_dir / str(job.id) / "notes.txt"
    single.write_text("a single file is sent as it is\n")
    note = jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.BUNDLE, path=single)

    shown = client.get(f"/api/jobs/{job.id}/artifacts/{adapter.id}").json()
    assert shown["sha256"] == adapter.sha256, "the content digest stays as recorded"
    download = shown["download"]
    assert download["zipped"] and download["filename"] == f"run-{job.id}-adapter.zip"
    for _ in range(2):  # every download of the same adapter hashes to the same shown value
        got = client.get(download["url"])
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == download["sha256"]
        assert len(got.content) == download["size_bytes"] == int(got.headers["content-length"])
        assert got.headers["x-content-sha256"] == download["sha256"]
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        assert archive.read("adapter_model.safetensors") == (folder / "adapter_model.safetensors").read_bytes()

    file_shown = client.get(f"/api/jobs/{job.id}/artifacts/{note.id}").json()["download"]
    assert not file_shown["zipped"]
    body = client.get(file_shown["url"]).content
    assert (len(body), hashlib.sha256(body).hexdigest()) == (file_shown["size_bytes"], file_shown["sha256"])

    assert client.get(f"/api/jobs/{job.id}/artifacts/{adapter.id + 99}").status_code == 404
    single.unlink()
    assert client.get(f"/api/jobs/{job.id}/artifacts/{note.id}").json()["download"] is None
