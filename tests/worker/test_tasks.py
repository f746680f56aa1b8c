"""worker.tasks called in-process: a delivery for a job that is not claimable does nothing; reap reports."""

from __future__ import annotations

from app.services import jobs
from worker import tasks

SPEC = {"base_model": "demo", "method": {"peft_type": "LORA"}}


def test_train_for_a_finished_or_missing_job_is_a_no_op(session, studio):
    job = jobs.create_job(session, spec=SPEC)
    jobs.request_cancel(session, job_id=job.id)
    session.close()  # on SQLite an open read transaction would hold the write lock
    assert tasks.train(job.id) is None
    assert tasks.train(12345) is None
    job = jobs.get_job(session, job_id=job.id)
    assert (job.status, job.attempt) == ("cancelled", 0)


def test_reap_task_runs_the_reaper(session, studio):
    job = jobs.create_job(session, spec=SPEC)
    session.close()
    assert tasks.reap() == {"requeued": [], "failed": [], "cancelled": [], "redelivered": []}
    jobs.request_cancel(session, job_id=job.id)
    assert tasks.train.name == "studio.train" and tasks.reap.name == "studio.reap"
