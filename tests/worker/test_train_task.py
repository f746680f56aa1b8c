"""The train task end to end with a real worker process, on SQLite + filesystem broker and PostgreSQL + Redis.

The fake trainer (tests.worker.fake_trainer) stands in for the real one, so these run in seconds.
"""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import insert

from app import broker
from app.db.base import utcnow
from app.db.models import Job
from app.db.session import session_scope
from app.services import jobs, metrics
from tests.support.processes import pid_alive, wait_gone
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _steps(stack, job_id):
    with session_scope(stack.settings) as session:
        return [m.step for m in metrics.metrics_since(session, job_id=job_id)]


def test_submit_runs_to_success_with_metrics_and_an_adapter(stack):
    job_id = stack.submit(name="delay=0.1", max_steps=8, checkpoint_every=4)
    assert stack.wait_status(job_id, "running", "succeeded").status == "running"  # 0.8 s of steps: seen running
    job = stack.wait_status(job_id, "succeeded")
    assert job.message == "Finished 8 steps; final loss 0.375."
    assert (job.attempt, job.progress_step, job.progress_total, job.last_checkpoint_step) == (1, 8, 8, 8)
    assert job.started_at <= job.finished_at and job.lease_owner is None and job.worker_pid is None
    assert _steps(stack, job_id) == list(range(1, 9))
    [adapter] = job.artifacts
    assert adapter.kind == "adapter" and adapter.size_bytes > 0 and len(adapter.sha256) == 64
    assert "step 8 loss 0.375" in job.log_tail
    assert stack.runs(job_id) == [{"pid": stack.runs(job_id)[0]["pid"], "start_step": 0}]


def test_cancel_stops_the_run_and_its_process(stack):
    job_id = stack.submit(name="delay=0.05", max_steps=2000)
    pid = stack.wait_job(job_id, lambda j: j.progress_step >= 3 and j.worker_pid, what="a few steps").worker_pid
    with session_scope(stack.settings) as session:
        jobs.request_cancel(session, job_id=job_id)
    job = stack.wait_status(job_id, "cancelled", timeout=30)
    assert job.message == f"Cancelled at step {job.progress_step} as requested."
    assert job.progress_step < 2000 and job.attempt == 1
    wait_gone(pid)


def test_a_run_that_ignores_cancel_is_killed_after_the_grace_period(stack):
    job_id = stack.submit(name="hang delay=0.05", max_steps=2000)
    pid = stack.wait_job(job_id, lambda j: j.progress_step >= 3 and j.worker_pid, what="a few steps").worker_pid
    with session_scope(stack.settings) as session:
        jobs.request_cancel(session, job_id=job_id)
    job = stack.wait_status(job_id, "cancelled", timeout=30)
    assert "did not stop by itself within 2 s, so it was killed" in job.message
    wait_gone(pid)


def test_sigkill_of_the_training_process_resumes_from_its_checkpoint(stack):
    job_id = stack.submit(name="delay=0.02 pause_at=12", max_steps=20, checkpoint_every=5)
    job = stack.wait_job(job_id, lambda j: j.progress_step == 12 and j.worker_pid, what="step 12")
    os.kill(job.worker_pid, signal.SIGKILL)
    job = stack.wait_status(job_id, "succeeded", timeout=60)
    first, second = stack.runs(job_id)
    assert first["start_step"] == 0 and second["start_step"] == 10  # the last checkpoint before the kill
    assert job.attempt == 2 and not stack.overlapped(job_id)
    assert _steps(stack, job_id) == list(range(1, 21))  # the resumed curve has every step exactly once
    assert "--- attempt 1: The training process was killed (SIGKILL" in job.log_tail
    assert job.message == "Finished 20 steps; final loss 0.15."


def test_duplicate_deliveries_do_nothing(stack):
    from worker.tasks import train

    worker = stack.workers[0]
    job_id = stack.submit(name="delay=0.05", max_steps=20)
    stack.wait_status(job_id, "running")
    train(job_id)  # a duplicate delivered to a second worker, in this process: claims nothing, returns at once
    before = len(worker.log())
    broker.ring(job_id, stack.settings)  # and two real duplicate messages for the running worker
    broker.ring(job_id, stack.settings)
    job = stack.wait_status(job_id, "succeeded")
    # each duplicate is either claimed-nothing or, if it waited past redeliver_after_seconds, dropped as expired
    wait_for(lambda: (log := worker.log()[before:]).count(f"job {job_id}: nothing to do") + log.count("Discarding revoked task") >= 2,
             timeout=30, what="both duplicates handled")
    assert job.attempt == 1 and len(stack.runs(job_id)) == 1


def test_a_problem_only_the_worker_can_see_fails_the_job_with_its_message(stack, tmp_path):
    job_id = stack.submit(dataset={"source": "jsonl", "path": str(tmp_path / "missing.jsonl")})
    job = stack.wait_status(job_id, "failed")
    assert job.message == f"dataset file {tmp_path / 'missing.jsonl'} does not exist on the worker"
    assert job.attempt == 1  # a run that cannot succeed is not retried


def test_a_trainer_error_mid_run_fails_the_job(stack):
    job_id = stack.submit(name="fail")
    job = stack.wait_status(job_id, "failed")
    assert job.message == "dataset row 7 has no 'messages' field" and job.attempt == 1


def test_an_internal_error_fails_the_job_with_a_pointer_to_the_log(stack):
    job_id = stack.submit(name="crash")
    job = stack.wait_status(job_id, "failed")
    assert job.message == "The trainer stopped with an internal error: KeyError: 'boom'"
    assert "bug" in job.error_hint and "KeyError" in job.log_tail


def test_an_invalid_stored_config_fails_before_training(stack):
    now = utcnow()
    with session_scope(stack.settings) as session:  # a row written around the API, e.g. by an older version
        job_id = session.execute(insert(Job).values(
            name="bad", status="queued", config={"base_model": "demo", "method": {"peft_type": "LORA", "r": -3}},
            base_model="demo", method="LORA", attempt=0, max_attempts=3, cancel_requested=False, progress_step=0,
            message="", log_tail="", log_lines=0, created_at=now, updated_at=now, enqueued_at=now,
        )).inserted_primary_key[0]
        session.commit()
    broker.ring(job_id, stack.settings)
    job = stack.wait_status(job_id, "failed")
    assert job.message.startswith("The job's settings are invalid: method.r:")
    assert job.error_hint == "Fix these settings and submit the job again."
    assert not pid_alive(job.worker_pid or 0)
