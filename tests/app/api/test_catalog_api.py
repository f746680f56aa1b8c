"""Methods, their schemas, suggested models and the pre-flight estimate over HTTP (no database needed)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_methods_and_their_schemas_come_from_the_registry(client):
    methods = client.get("/api/methods").json()
    lora = next(m for m in methods if m["peft_type"] == "LORA")
    assert lora["title"] == "LoRA" and lora["description"].startswith("LoRA")
    schema = client.get("/api/methods/lora/schema").json()
    r = schema["properties"]["r"]
    assert (r["type"], r["default"], r["exclusiveMinimum"], r["x-advanced"]) == ("integer", 8, 0, False)
    assert schema["properties"]["bias"]["enum"] == ["none", "all", "lora_only"]
    missing = client.get("/api/methods/NOPE/schema")
    assert missing.status_code == 404 and "LORA" in missing.json()["detail"]
    training = client.get("/api/training/schema").json()["properties"]
    assert training["learning_rate"]["default"] == 2e-4 and training["warmup_ratio"]["x-advanced"] is True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_models_and_estimate(client):
    models = client.get("/api/models").json()
    assert models[0]["id"] == "demo" and any(m["id"] == "Qwen/Qwen2.5-0.5B-Instruct" for m in models)
    est = client.post("/api/estimate", json={
        "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "method": {"peft_type": "LORA", "r": 16}, "training": {"max_steps": 50},
    }).json()
    assert est["total_steps"] == 50 and est["trainable_params"] > 0 and est["total_bytes"] > est["weights_bytes"]
