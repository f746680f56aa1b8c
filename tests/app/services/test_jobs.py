"""app.services.jobs on SQLite and PostgreSQL: creation, the state machine, claims, leases, reaping, reporting."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import Job
from app.db.session import session_scope
from app.jobspec import JobSpecError
from app.services import jobs, metrics
from app.services.jobs import ALLOWED_TRANSITIONS, ArtifactKind, JobStateError, JobStatus
from tests.support.broker_messages import queued_messages

SPEC = {"base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 6}}


def _create(session, **over):
    return jobs.create_job(session, spec={**SPEC, **over})


def _expire_lease(session, job_id):
    session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()


def test_create_job_stores_normalised_config_and_rings_the_broker(session, studio):
    job = _create(session, name="first")
    assert (job.status, job.name, job.base_model, job.method, job.attempt) == ("queued", "first", "demo", "LORA", 0)
    assert job.max_attempts == studio.max_attempts
    assert job.config["training"]["max_steps"] == 6 and job.config["training"]["learning_rate"] == 2e-4  # defaults filled in
    assert job.message == "Waiting for a worker."
    assert queued_messages(studio) == [("studio.train", [job.id])]  # the message is only the job id


def test_create_job_rejects_a_bad_spec_with_every_problem_and_stores_nothing(session, studio):
    with pytest.raises(JobSpecError) as err:
        jobs.create_job(session, spec={"base_model": "", "method": {"peft_type": "LORA", "r": 0}, "training": {"lr": 1}})
    assert len(err.value.problems) == 3
    assert any(p.startswith("base_model:") for p in err.value.problems)
    assert any(p.startswith("method.r:") for p in err.value.problems)
    assert any(p.startswith("training.lr: unknown setting") for p in err.value.problems)
    assert jobs.list_jobs(session) == [] and queued_messages(studio) == []


def test_packing_with_a_prompt_learning_method_is_refused_at_submit(session, studio):
    """Refused before anything is queued: every packed row would share the method's virtual tokens."""
    spec = {"base_model": "demo", "method": {"peft_type": "PROMPT_TUNING"}, "training": {"packing": True}}
    with pytest.raises(JobSpecError) as caught:
        jobs.create_job(session, spec=spec, settings=studio)
    assert any(p.startswith("training.packing: ") and "prepends virtual tokens" in p for p in caught.value.problems), caught.value.problems
    assert session.query(Job).count() == 0
    spec["training"]["packing"] = False
    assert jobs.create_job(session, spec=spec, settings=studio).status == "queued"


def test_state_machine_terminal_states_have_no_way_out():
    assert {s for s in JobStatus if s.terminal} == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    assert JobStatus.QUEUED in ALLOWED_TRANSITIONS[JobStatus.RUNNING]  # requeue after a crash
    assert JobStatus.SUCCEEDED not in ALLOWED_TRANSITIONS[JobStatus.QUEUED]  # a job cannot succeed without running


def test_transition_refuses_moves_the_table_does_not_allow(session):
    job = _create(session)
    assert not jobs.transition(session, job_id=job.id, to=JobStatus.SUCCEEDED, message="x")
    claim = jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=30)
    assert jobs.finish_job(session, job_id=job.id, owner=claim.owner, status=JobStatus.SUCCEEDED, message="done")
    for target in JobStatus:
        assert not jobs.transition(session, job_id=job.id, to=target, message="again")
    job = jobs.get_job(session, job_id=job.id)
    assert (job.status, job.message, job.lease_owner) == ("succeeded", "done", None)
    assert job.started_at <= job.finished_at


def test_claim_is_exclusive_and_a_duplicate_delivery_gets_nothing(session):
    job = _create(session)
    claim = jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=30)
    assert claim is not None and (claim.attempt, claim.resume_from) == (1, None)
    assert jobs.claim_job(session, job_id=job.id, owner="w2", lease_seconds=30) is None
    job = jobs.get_job(session, job_id=job.id)
    assert (job.status, job.attempt, job.lease_owner) == ("running", 1, "w1")
    assert job.lease_expires_at > utcnow() + timedelta(seconds=25)


def test_concurrent_claims_have_exactly_one_winner(session, studio):
    job = _create(session)
    results: list[object] = []
    barrier = threading.Barrier(6)

    def claim(i: int) -> None:
        with session_scope(studio) as s:
            barrier.wait()
            results.append(jobs.claim_job(s, job_id=job.id, owner=f"w{i}", lease_seconds=30))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert jobs.get_job(session, job_id=job.id).attempt == 1


def test_an_expired_lease_can_be_taken_over_and_fences_out_the_old_owner(session):
    job = _create(session)
    jobs.claim_job(session, job_id=job.id, owner="old", lease_seconds=30)
    _expire_lease(session, job.id)
    claim = jobs.claim_job(session, job_id=job.id, owner="new", lease_seconds=30)
    assert claim is not None and claim.attempt == 2
    assert not jobs.renew_lease(session, job_id=job.id, owner="old", lease_seconds=30)
    assert jobs.record_metrics(session, job_id=job.id, rows=[{"step": 1, "loss": 1.0}], owner="old") == 0
    assert not jobs.record_checkpoint(session, job_id=job.id, owner="old", path="/x", step=1)
    assert not jobs.finish_job(session, job_id=job.id, owner="old", status=JobStatus.FAILED, message="stale")
    assert jobs.renew_lease(session, job_id=job.id, owner="new", lease_seconds=30)
    assert jobs.get_job(session, job_id=job.id).status == "running"


def test_no_claim_past_max_attempts_or_after_a_cancel_request(session):
    job = _create(session)
    session.execute(update(Job).where(Job.id == job.id).values(attempt=Job.max_attempts))
    session.commit()
    assert jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30) is None
    other = _create(session)
    session.execute(update(Job).where(Job.id == other.id).values(cancel_requested=True))
    session.commit()
    assert jobs.claim_job(session, job_id=other.id, owner="w", lease_seconds=30) is None


def test_cancel_a_queued_job_ends_it_at_once(session):
    job = _create(session)
    job = jobs.request_cancel(session, job_id=job.id)
    assert (job.status, job.message, job.cancel_requested) == ("cancelled", "Cancelled before it started.", True)
    with pytest.raises(JobStateError, match="already cancelled"):
        jobs.request_cancel(session, job_id=job.id)


def test_cancel_a_running_job_asks_its_worker(session):
    job = _create(session)
    claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30)
    job = jobs.request_cancel(session, job_id=job.id)
    assert (job.status, job.cancel_requested) == ("running", True)
    assert "Cancelling" in job.message
    assert jobs.is_cancel_requested(session, job_id=job.id)
    assert jobs.finish_job(session, job_id=job.id, owner=claim.owner, status=JobStatus.CANCELLED, message="Cancelled at step 3 as requested.")


def test_unknown_job_is_a_clear_error(session):
    with pytest.raises(jobs.JobNotFound, match="there is no job 999"):
        jobs.get_job(session, job_id=999)


def test_resume_point_and_metrics_after_it_are_replaced(session, tmp_path: Path):
    job = _create(session)
    claim = jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=30)
    rows = [{"step": s, "loss": 1.0 / s, "epoch": 0.1 * s, "ignored": 5} for s in range(1, 6)]
    assert jobs.record_metrics(session, job_id=job.id, rows=rows, owner=claim.owner) == 5
    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    assert jobs.record_checkpoint(session, job_id=job.id, owner=claim.owner, path=str(checkpoint), step=3)
    assert jobs.requeue_job(session, job_id=job.id, owner=claim.owner, reason="The training process was killed.") is JobStatus.QUEUED
    job = jobs.get_job(session, job_id=job.id)
    assert job.status == "queued"
    assert job.message == "The training process was killed. It will resume from step 3 (attempt 2 of 3)."
    again = jobs.claim_job(session, job_id=job.id, owner="w2", lease_seconds=30)
    assert (again.attempt, again.resume_from, again.resume_step) == (2, str(checkpoint), 3)
    assert [m.step for m in metrics.metrics_since(session, job_id=job.id)] == [1, 2, 3]
    assert [m.step for m in metrics.metrics_since(session, job_id=job.id, after_step=1)] == [2, 3]
    assert jobs.get_job(session, job_id=job.id).message == "Resuming from step 3 (attempt 2 of 3)."


def test_requeue_fails_the_job_when_out_of_attempts(session):
    job = _create(session)
    for attempt in range(1, 4):
        claim = jobs.claim_job(session, job_id=job.id, owner=f"w{attempt}", lease_seconds=30)
        status = jobs.requeue_job(session, job_id=job.id, owner=claim.owner, reason="The training process was killed.")
    assert status is JobStatus.FAILED
    job = jobs.get_job(session, job_id=job.id)
    assert job.status == "failed" and "Gave up after 3 attempts" in job.message and "batch_size" in job.error_hint


def test_requeue_on_worker_shutdown_gives_the_attempt_back(session):
    job = _create(session)
    claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30)
    jobs.requeue_job(session, job_id=job.id, owner=claim.owner, reason="Its worker was shut down.", count_attempt=False)
    assert jobs.get_job(session, job_id=job.id).attempt == 0


def test_reaper_requeues_expired_leases_then_fails_them(session, studio):
    job = _create(session)
    jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=30)
    assert jobs.reap(session).requeued == []  # a live lease is left alone
    _expire_lease(session, job.id)
    report = jobs.reap(session)
    assert report.requeued == [job.id]
    assert "stopped responding" in jobs.get_job(session, job_id=job.id).message
    assert queued_messages(studio)[-1] == ("studio.train", [job.id])
    session.execute(update(Job).where(Job.id == job.id).values(attempt=3))
    session.commit()
    session.execute(update(Job).where(Job.id == job.id).values(status="running", lease_owner="w3", lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert jobs.reap(session).failed == [job.id]
    assert jobs.get_job(session, job_id=job.id).status == "failed"


def test_reaper_cancels_a_cancelled_job_whose_worker_vanished(session):
    job = _create(session)
    jobs.claim_job(session, job_id=job.id, owner="w1", lease_seconds=30)
    jobs.request_cancel(session, job_id=job.id)
    _expire_lease(session, job.id)
    assert jobs.reap(session).cancelled == [job.id]
    assert jobs.get_job(session, job_id=job.id).status == "cancelled"


def test_reaper_sends_again_only_jobs_left_queued_too_long(session, studio):
    fresh, stale = _create(session), _create(session)
    session.execute(update(Job).where(Job.id == stale.id).values(enqueued_at=utcnow() - timedelta(seconds=60)))
    session.commit()
    assert jobs.reap(session).redelivered == [stale.id]
    assert jobs.reap(session).redelivered == []  # its clock was reset
    assert sorted(jobs.reap(session, redeliver_all=True).redelivered) == [fresh.id, stale.id]  # as at worker start


def test_log_tail_keeps_the_last_lines_and_counts_all(session):
    job = _create(session)
    jobs.append_log(session, job_id=job.id, lines=[f"line {i}" for i in range(150)])
    jobs.append_log(session, job_id=job.id, lines=[f"line {i}" for i in range(150, 250)])
    job = jobs.get_job(session, job_id=job.id)
    assert job.log_lines == 250 and job.log_tail.splitlines() == [f"line {i}" for i in range(50, 250)]
    new, seen = jobs.log_since(job, 245)
    assert new == [f"line {i}" for i in range(245, 250)] and seen == 250


def test_record_artifact_hashes_a_folder(session, tmp_path: Path):
    job = _create(session)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"x" * 10)
    artifact = jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=adapter)
    assert (artifact.kind, artifact.size_bytes, len(artifact.sha256)) == ("adapter", 12, 64)
    assert [a.id for a in jobs.get_job(session, job_id=job.id).artifacts] == [artifact.id]


def test_list_jobs_newest_first_and_by_status(session):
    a, b = _create(session), _create(session)
    jobs.request_cancel(session, job_id=a.id)
    assert [j.id for j in jobs.list_jobs(session)] == [b.id, a.id]
    assert [j.id for j in jobs.list_jobs(session, status=JobStatus.CANCELLED)] == [a.id]


def test_a_broker_outage_at_submit_leaves_the_job_queued_for_the_reaper(session, studio, caplog):
    from dataclasses import replace

    from tests.support.processes import free_port

    offline = replace(studio, broker_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    job = jobs.create_job(session, spec=SPEC, settings=offline)
    assert job.status == "queued" and jobs.get_job(session, job_id=job.id).status == "queued"
    assert f"job {job.id} is queued but the broker" in caplog.text
    session.execute(update(Job).where(Job.id == job.id).values(enqueued_at=utcnow() - timedelta(seconds=60)))
    session.commit()
    assert jobs.reap(session, settings=studio).redelivered == [job.id]  # the broker is back: sent again
    assert queued_messages(studio) == [("studio.train", [job.id])]
