"""The datasets REST API: upload, list, get, page, map, delete; an unusable file answers 422 in words and keeps nothing."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_upload_map_preview_and_delete(client, studio):
    body = b"ask,reply,note\n" + b"".join(f"hello {i}?,hi {i},x\n".encode() for i in range(30))
    made = client.post("/api/datasets", files={"file": ("greetings.csv", body, "text/csv")})
    assert made.status_code == 201, made.text
    data = made.json()
    assert (data["name"], data["rows"], data["columns"], data["detected"], data["size_bytes"]) == (
        "greetings.csv", 30, ["ask", "reply", "note"], None, len(body))
    assert client.post("/api/datasets", files={"file": ("again.csv", body)}).json()["id"] == data["id"]
    assert [d["id"] for d in client.get("/api/datasets").json()] == [data["id"]]
    bad = client.put(f"/api/datasets/{data['id']}/mapping", json={"format": "prompt_completion", "mapping": {"prompt": "ask"}})
    assert bad.status_code == 422 and "no column for 'completion'" in bad.json()["detail"]["message"]
    mapped = client.put(f"/api/datasets/{data['id']}/mapping", json={"format": "prompt_completion", "mapping": {"prompt": "ask", "completion": "reply"}})
    assert mapped.json()["format"] == "prompt_completion" and mapped.json()["mapping"] == {"prompt": "ask", "completion": "reply"}
    page = client.get(f"/api/datasets/{data['id']}/rows", params={"page": 2, "page_size": 25}).json()
    assert (page["total"], page["pages"], page["rows"]) == (30, 2, [[f"hello {i}?", f"hi {i}", "x"] for i in range(25, 30)])
    job = client.post("/api/jobs", json={"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "stored", "dataset_id": data["id"]}})
    assert job.status_code in (200, 201) and job.json()["config"]["dataset"]["mapping"] == {"prompt": "ask", "completion": "reply"}
    assert client.delete(f"/api/datasets/{data['id']}").status_code == 409
    client.post(f"/api/jobs/{job.json()['id']}/cancel")
    assert client.delete(f"/api/datasets/{data['id']}").status_code == 204
    assert client.get(f"/api/datasets/{data['id']}").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unusable_uploads_answer_422_in_words(client, studio):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.jsonl", "{}")
    refused = client.post("/api/datasets", files={"file": ("train.jsonl", archive.getvalue())})
    assert refused.status_code == 422 and "train.jsonl is a zip archive" in refused.json()["detail"]["message"]
    bad = client.post("/api/datasets", files={"file": ("bad.jsonl", b'{"text": "ok"}\n{"text": \n')})
    detail = bad.json()["detail"]
    assert bad.status_code == 422 and detail["problems"] == ["line 2: not valid JSON (Expecting value at column 9)"] and detail["hint"]
    missing = client.post("/api/datasets/path", json={"path": "/nowhere/data.csv"})
    assert missing.status_code == 422 and "/nowhere/data.csv" in missing.json()["detail"]["message"]
    assert client.get("/api/datasets").json() == []
    assert not any((studio.data_dir / "tmp").iterdir())
