"""STUDIO_DATASET_ROOTS: which server paths the Datasets page, POST /api/datasets/path and job specs may read.

A studio on loopback reads any path (as before); bound elsewhere with no roots it refuses every server path
naming the setting; with roots, only paths under them once symlinks are followed. Refusals keep nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.datasets import DatasetError
from app.datasets.roots import check_server_path, is_loopback
from app.jobspec import JobSpecError
from app.services import datasets as service
from app.services import jobs
from app.settings import Settings, get_settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("question,answer\n" + "".join(f"What is {i} + {i}?,{2 * i}\n" for i in range(3)))
    return path


def _reload(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return get_settings()


def _file_job(path: Path) -> dict:
    return {"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "file", "path": str(path)}}


def test_loopback_hosts_are_told_apart(studio):
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "studio.example.com"))


def test_on_loopback_without_roots_any_path_is_read_as_before(tmp_path, session, studio):
    record = service.import_path(session, str(_csv(tmp_path / "anywhere" / "qa.csv")), settings=studio)
    assert record.rows == 3


def test_bound_elsewhere_without_roots_server_paths_are_refused_naming_the_setting(tmp_path, session, studio, monkeypatch):
    settings = _reload(monkeypatch, STUDIO_HOST="0.0.0.0")
    data = _csv(tmp_path / "qa.csv")
    with pytest.raises(DatasetError, match="listens on 0.0.0.0.*STUDIO_DATASET_ROOTS is not set") as err:
        service.import_path(session, str(data), settings=settings)
    assert "set STUDIO_DATASET_ROOTS" in err.value.hint
    folder = data.parent / "folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(DatasetError, match="STUDIO_DATASET_ROOTS"):  # a dataset folder given as a "Hub id" is a server path too
        service.import_hub(session, str(folder), settings=settings)
    with pytest.raises(JobSpecError) as refused:
        jobs.create_job(session, spec=_file_job(data), settings=settings)
    assert refused.value.problems[0].startswith("dataset.path: Reading datasets from paths on the server is turned off")
    assert service.list_datasets(session) == [] and jobs.list_jobs(session) == []
    assert not (settings.data_dir / "datasets").exists()


def test_with_roots_only_paths_under_them_are_read_and_a_symlink_cannot_lead_out(tmp_path, session, studio, monkeypatch):
    allowed = tmp_path / "allowed"
    settings = _reload(monkeypatch, STUDIO_HOST="0.0.0.0", STUDIO_DATASET_ROOTS=str(allowed))
    inside = _csv(allowed / "team" / "qa.csv")
    outside = _csv(tmp_path / "private" / "secrets.csv")
    (allowed / "escape.csv").symlink_to(outside)
    assert service.import_path(session, str(inside), settings=settings).rows == 3
    for path in (outside, allowed / "escape.csv", allowed / ".." / "private" / "secrets.csv"):
        with pytest.raises(DatasetError, match=f"outside the folders datasets may be read from \\({allowed}\\)"):
            service.import_path(session, str(path), settings=settings)
    assert "which is " + str(outside) in str(pytest.raises(DatasetError, check_server_path, allowed / "escape.csv", settings).value)
    assert len(service.list_datasets(session)) == 1
    # At submit only the rule is checked: a missing file under a root is queued (the worker says it is missing).
    assert jobs.create_job(session, spec=_file_job(allowed / "not-yet.jsonl"), settings=settings).status == "queued"
    with pytest.raises(JobSpecError, match="dataset.path: The path .*secrets.csv is outside"):
        jobs.create_job(session, spec={**_file_job(outside), "dataset": {"source": "jsonl", "path": str(outside)}}, settings=settings)
    # A stored dataset's own copy under the data folder is always readable.
    stored = service.list_datasets(session)[0].path
    assert check_server_path(stored, settings) == Path(stored).resolve()


def test_the_api_refuses_with_422_in_words(tmp_path, studio, monkeypatch):
    _reload(monkeypatch, STUDIO_HOST="10.0.0.5", STUDIO_DATASET_ROOTS=str(tmp_path / "allowed"))
    outside = _csv(tmp_path / "elsewhere" / "qa.csv")
    with TestClient(create_app()) as client:
        refused = client.post("/api/datasets/path", json={"path": str(outside)})
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "is outside the folders datasets may be read from" in detail["message"] and "STUDIO_DATASET_ROOTS" in detail["hint"]
        job = client.post("/api/jobs", json=_file_job(outside))
        assert job.status_code == 422 and "dataset.path: The path" in job.json()["detail"]["problems"][0]
        assert client.get("/api/datasets").json() == [] and client.get("/api/jobs").json() == []
        for route in ("sample", "lengths"):  # the sample inspector reads a `file` dataset by path too
            shown = client.post(f"/api/inspect/{route}", json=_file_job(outside))
            assert shown.status_code == 422 and "is outside the folders datasets may be read from" in shown.json()["detail"]["message"]
        inside = _csv(tmp_path / "allowed" / "qa.csv")
        assert client.post("/api/datasets/path", json={"path": str(inside)}).status_code == 201
