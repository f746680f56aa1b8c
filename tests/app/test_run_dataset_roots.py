"""`peft-studio run --host 0.0.0.0` (as docker-compose starts it) with no STUDIO_DATASET_ROOTS refuses server paths.

The --host flag, not only STUDIO_HOST, decides: a studio told to listen on every address must not read
any file of the server for whoever reaches it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.support.processes import StudioProcess, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_run_on_every_address_refuses_server_path_datasets_naming_the_setting(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env["STUDIO_DATA_DIR"] = str(tmp_path / "data")
    data = tmp_path / "qa.csv"
    data.write_text("question,answer\nWhat is 1 + 1?,2\n")
    studio = StudioProcess(["run", "--no-worker", "--host", "0.0.0.0", "--port", str(port)], env, tmp_path / "run.log").start()
    api = f"http://127.0.0.1:{port}/api"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=90, what="the studio's /api/health", interval=0.2)
        refused = httpx.post(f"{api}/datasets/path", json={"path": str(data)})
        assert refused.status_code == 422, refused.text
        assert "listens on 0.0.0.0" in refused.json()["detail"]["message"] and "STUDIO_DATASET_ROOTS" in refused.json()["detail"]["hint"]
        job = httpx.post(f"{api}/jobs", json={"base_model": "demo", "method": {"peft_type": "LORA"}, "dataset": {"source": "file", "path": str(data)}})
        assert job.status_code == 422 and "STUDIO_DATASET_ROOTS" in job.json()["detail"]["problems"][0]
        uploaded = httpx.post(f"{api}/datasets", files={"file": ("qa.csv", data.read_bytes())})
        assert uploaded.status_code == 201, "an upload is not a server path and still works"
    finally:
        studio.stop()
    assert studio.proc.returncode == 0, studio.log()[-2000:]
