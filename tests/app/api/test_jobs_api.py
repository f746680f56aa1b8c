"""The REST API over the real services and database (both), in-process through FastAPI's test client."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.db.session import session_scope
from app.services import jobs

SPEC = {"name": "api run", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 5}}


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


def test_health(client):
    assert client.get("/api/health").json() == {"status": "ok", "database": "ok"}


def test_create_list_get_cancel(client, studio):
    created = client.post("/api/jobs", json=SPEC)
    assert created.status_code == 201
    job = created.json()
    assert (job["status"], job["name"], job["method"]) == ("queued", "api run", "LORA")
    assert "lease_owner" not in job
    assert [j["id"] for j in client.get("/api/jobs").json()] == [job["id"]]
    assert client.get("/api/jobs", params={"status": "running"}).json() == []
    detail = client.get(f"/api/jobs/{job['id']}").json()
    assert detail["artifacts"] == [] and detail["log_tail"] == ""
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_bad_spec_is_422_with_every_problem(client):
    response = client.post("/api/jobs", json={"base_model": "demo", "method": {"peft_type": "NOPE"}, "training": {"epochs": -1}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["message"] == "invalid job"
    assert any(p.startswith("training.epochs") for p in detail["problems"])
    assert any(p.startswith("method") for p in detail["problems"])
    assert client.get("/api/jobs").json() == []


def test_unknown_job_is_404(client):
    for response in (client.get("/api/jobs/41"), client.post("/api/jobs/41/cancel"), client.get("/api/jobs/41/metrics")):
        assert response.status_code == 404 and "there is no job 41" in response.json()["detail"]


def test_metrics_since_a_step(client, studio):
    job_id = client.post("/api/jobs", json=SPEC).json()["id"]
    with session_scope(studio) as session:
        claim = jobs.claim_job(session, job_id=job_id, owner="w", lease_seconds=30)
        jobs.record_metrics(session, job_id=job_id, rows=[{"step": s, "loss": 2.0 / s, "padding_share": s / 8} for s in (1, 2, 3)], owner=claim.owner)
    rows = client.get(f"/api/jobs/{job_id}/metrics", params={"after_step": 1}).json()
    assert [(r["step"], r["loss"], r["padding_share"]) for r in rows] == [(2, 1.0, 0.25), (3, 2.0 / 3, 0.375)]
