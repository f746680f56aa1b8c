"""POST /api/combine and GET /api/combine/candidates over the real services and database."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.app.services.test_combining import finished
from tests.support.broker_messages import queued_messages


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


def test_combine_endpoint_refuses_in_words_then_queues_a_job(client, session, studio):
    a, b = finished(session, studio, name="a"), finished(session, studio, name="b")
    other = finished(session, studio, base="no-such-org/other-model", name="other")

    listed = {c["id"]: c for c in client.get("/api/combine/candidates").json()}
    assert listed[a] == {"id": a, "name": "a", "base_model": "demo", "method": "LORA", "rank": 4, "reason": None}

    refused = client.post("/api/combine", json={"run_ids": [a, other], "weights": [1, 1], "combination_type": "ties"})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail["message"] == "cannot combine these runs"
    assert any(f"run #{other} (other) cannot be combined: its base model" in p for p in detail["problems"])
    assert any(p.startswith("density: ties keeps this share") for p in detail["problems"])

    accepted = client.post("/api/combine", json={"run_ids": [a, b], "weights": [0.5, 1.5], "combination_type": "cat", "name": "a+b"})
    assert accepted.status_code == 202
    job = accepted.json()
    assert (job["name"], job["status"], job["method"], job["base_model"]) == ("a+b", "queued", "LORA", "demo")
    assert job["config"]["combine"]["combination_type"] == "cat"
    assert ("studio.combine", [job["id"]]) in queued_messages(studio)
    assert client.get(f"/api/jobs/{job['id']}").json()["message"] == "Waiting for a worker to combine the adapters."
    assert client.post("/api/combine", json={"run_ids": [a, b]}).status_code == 422  # weights are required
