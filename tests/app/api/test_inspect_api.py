"""The sample inspector over HTTP: a demo row's tokens and the length report, and errors as 422 with a hint."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.worker.training.conftest import data_dir, demo_folder  # noqa: F401  (the demo model, built once)

SPEC = {"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "demo"}, "training": {"max_seq_length": 40}}


@pytest.fixture
def client(studio):
    with TestClient(create_app()) as c:
        yield c


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sample_and_lengths_for_the_demo(client, studio, demo_folder):  # noqa: F811
    missing = client.post("/api/inspect/sample", json=SPEC)
    assert missing.status_code == 422 and "built on the first run" in missing.json()["detail"]["message"]
    assert missing.json()["detail"]["hint"]
    shutil.copytree(demo_folder, studio.data_dir / "demo-model" / demo_folder.name)  # as if the worker had built it

    view = client.post("/api/inspect/sample?row=0", json=SPEC).json()
    assert view["text"].startswith("<|im_start|>user\n") and view["text"].endswith("<|im_end|>")
    assert view["tokens"][0]["piece"] == "<|im_start|>" and view["tokens"][0]["trained"] is False
    assert view["tokens"][-1]["eos"] is True and view["tokens"][-1]["trained"] is True
    assert view["trained_tokens"] + view["masked_tokens"] == len(view["tokens"])
    assert 'class="ps-sample"' in view["html"]

    report = client.post("/api/inspect/lengths", json=SPEC).json()
    assert report["rows"] == 640 and sum(b["count"] for b in report["bins"]) == 640
    assert report["truncated"] > 0 and "<svg" in report["html"]

    out_of_range = client.post("/api/inspect/sample?row=9999", json=SPEC)
    assert out_of_range.status_code == 422 and "Row 10000 does not exist" in out_of_range.json()["detail"]["message"]
