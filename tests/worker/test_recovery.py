"""Nothing is lost when processes go away: the web server, the broker, a worker (killed or shut down).

Each test builds its own stack, since it kills parts of it.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from app.services.jobs import JobStatus
from tests.support.processes import free_port, pid_alive, start_web, wait_gone
from tests.support.stack import running_stack

pytestmark = pytest.mark.integration


def test_restarting_the_web_server_and_the_broker_loses_nothing(request, tmp_path):
    with running_stack(request, tmp_path, "postgresql+redis") as stack:
        port = free_port()
        web = start_web(stack.env, tmp_path / "web.log", port)
        api = f"http://127.0.0.1:{port}/api/jobs"
        spec = {"base_model": "demo", "method": {"peft_type": "LORA"}, "training": {"max_steps": 30, "checkpoint_every": 10}}
        first = httpx.post(api, json={**spec, "name": "delay=0.05"}).json()["id"]
        second = httpx.post(api, json={**spec, "name": "delay=0.01"}).json()["id"]
        stack.wait_status(first, "running")
        web.kill()  # the web process dies mid-run ...
        stack.redis.restart()  # ... and the broker comes back empty: any message it held is gone
        web = start_web(stack.env, tmp_path / "web-2.log", port)
        for job_id in (first, second):
            job = stack.wait_status(job_id, "succeeded", timeout=90)
            assert job.attempt == 1 and len(stack.runs(job_id)) == 1, job.message
            assert httpx.get(f"{api}/{job_id}").json()["status"] == "succeeded"
        web.stop()


def test_a_killed_worker_is_replaced_and_the_job_resumes_from_its_checkpoint(request, tmp_path):
    with running_stack(request, tmp_path, "sqlite+filesystem") as stack:
        job_id = stack.submit(name="delay=0.02 pause_at=7", max_steps=15, checkpoint_every=5)
        child = stack.wait_job(job_id, lambda j: j.progress_step == 7 and j.worker_pid, what="step 7").worker_pid
        stack.workers[0].kill()  # SIGKILL of the worker itself: nobody is left to renew the lease
        wait_gone(child)  # its training child notices and exits: no run is left behind
        stack.add_worker()  # a new worker reaps the expired lease and resumes the job
        job = stack.wait_status(job_id, "succeeded", timeout=60)
        first, second = stack.runs(job_id)
        assert second["start_step"] == 5 and job.attempt == 2 and not stack.overlapped(job_id)


def test_two_workers_never_run_one_job_twice(request, tmp_path):
    from app import broker

    with running_stack(request, tmp_path, "postgresql+redis", workers=2) as stack:
        job_id = stack.submit(name="delay=0.05", max_steps=20)
        stack.wait_status(job_id, "running")
        for _ in range(3):
            broker.ring(job_id, stack.settings)  # duplicates reach the idle worker while the job runs
        job = stack.wait_status(job_id, "succeeded")
        assert job.attempt == 1 and len(stack.runs(job_id)) == 1 and not stack.overlapped(job_id)
        assert any(f"job {job_id}: nothing to do" in w.log() for w in stack.workers)


def test_a_worker_shutting_down_hands_its_job_back_without_using_an_attempt(request, tmp_path):
    with running_stack(request, tmp_path, "sqlite+filesystem") as stack:
        job_id = stack.submit(name="delay=0.02 pause_at=7", max_steps=15, checkpoint_every=5)
        job = stack.wait_job(job_id, lambda j: j.progress_step == 7 and j.worker_pid, what="step 7")
        os.kill(stack.workers[0].pid, signal.SIGTERM)  # warm shutdown, as `docker compose stop` or Ctrl-C
        stack.workers[0].proc.wait(30)
        assert not pid_alive(job.worker_pid)
        job = stack.job(job_id)
        assert job.status == JobStatus.QUEUED.value and job.attempt == 0
        assert job.message == "Its worker was shut down. It will resume from step 5 (attempt 1 of 3)."
        stack.add_worker()
        job = stack.wait_status(job_id, "succeeded", timeout=60)
        assert job.attempt == 1 and stack.runs(job_id)[1]["start_step"] == 5
