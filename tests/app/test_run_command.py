"""`peft-studio run` on its embedded defaults: web server + its own worker process, no outside service."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import FAST_TIMINGS
from tests.support.processes import StudioProcess, free_port, pid_alive, wait_gone
from tests.support.stack import FAKE_TRAINER
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    """Child processes of `pid`, whichever of its threads started them."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def test_run_serves_the_api_and_trains_with_its_embedded_worker(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env.update({"STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_TRAINER": FAKE_TRAINER, **FAST_TIMINGS})
    studio = StudioProcess(["run", "--port", str(port)], env, tmp_path / "run.log").start()
    api = f"http://127.0.0.1:{port}/api"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=90, what="the studio's /api/health", interval=0.2)
        spec = {"name": "delay=0.02", "base_model": "demo", "method": {"peft_type": "LORA"}, "training": {"max_steps": 5}}
        job_id = httpx.post(f"{api}/jobs", json=spec).json()["id"]
        job = wait_for(lambda: (j := httpx.get(f"{api}/jobs/{job_id}").json())["status"] == "succeeded" and j,
                       timeout=90, what="the job to succeed", interval=0.2)
        assert job["artifacts"][0]["kind"] == "adapter"
        assert (tmp_path / "data" / "studio.db").exists() and (tmp_path / "data" / "broker").is_dir()
        [worker_pid] = _children(studio.pid)
        assert pid_alive(worker_pid)
    finally:
        studio.stop()
    assert studio.proc.returncode == 0, studio.log()[-2000:]
    wait_gone(worker_pid)  # stopping the studio stops its worker too
