"""worker.reporter: the training hooks reach the DB in small batches, cancel polls are cheap, a lost lease stops the run."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app.db.session import get_engine, session_scope, sessionmaker_for
from app.services import jobs, metrics
from worker.reporter import JobReporter
from worker.training.hooks import TrainHooks

SPEC = {"base_model": "demo", "method": {"peft_type": "LORA"}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def claimed(session, studio):
    job = jobs.create_job(session, spec=SPEC)
    claim = jobs.claim_job(session, job_id=job.id, owner="owner-1", lease_seconds=60)
    session.close()
    clock = Clock()
    reporter = JobReporter(sessionmaker_for(studio), job_id=job.id, owner=claim.owner, clock=clock)
    return job.id, reporter, clock


def _steps(studio, job_id: int) -> list[int]:
    """Read in a short session of its own: on SQLite an open read transaction holds the write lock."""
    with session_scope(studio) as s:
        return [m.step for m in metrics.metrics_since(s, job_id=job_id)]


def _job(studio, job_id: int):
    with session_scope(studio) as s:
        return jobs.get_job(s, job_id=job_id)


def _count_statements(url: str) -> list[str]:
    seen: list[str] = []
    event.listen(get_engine(url), "before_cursor_execute", lambda conn, cursor, stmt, *a: seen.append(stmt))
    return seen


def test_rows_are_buffered_and_written_at_most_once_a_second(claimed, session, studio):
    job_id, reporter, clock = claimed
    statements = _count_statements(studio.database_url)
    for step in range(1, 11):  # ten quick steps within the same second: nothing written yet
        reporter.on_metrics([{"step": step, "loss": 1.0 / step}])
        reporter.on_progress(step, 10)
        reporter.on_log(f"step {step}")
    assert statements == [] and _steps(studio, job_id) == []
    statements.clear()
    clock.now += 1.0
    reporter.on_metrics([{"step": 11, "loss": 0.09}])  # the next hook call after a second flushes everything
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO METRICS")]
    assert len(inserts) == 1  # one batch insert, not one per row
    assert _steps(studio, job_id) == list(range(1, 12))
    job = _job(studio, job_id)
    assert (job.progress_step, job.progress_total, job.log_lines) == (10, 10, 10)


def test_should_stop_polls_the_db_at_most_every_half_second(claimed, session, studio):
    job_id, reporter, clock = claimed
    assert reporter.should_stop() is False
    statements = _count_statements(studio.database_url)
    jobs.request_cancel(session, job_id=job_id)
    session.close()
    statements.clear()
    assert reporter.should_stop() is False  # polled less than 0.5 s ago: no query, no answer yet
    assert statements == []
    clock.now += 0.5
    assert reporter.should_stop() is True and reporter.stop_reason == "cancelled"


def test_a_lost_lease_stops_the_run_and_its_writes(claimed, session, studio):
    job_id, reporter, clock = claimed
    jobs.requeue_job(session, job_id=job_id, owner="owner-1", reason="Test.")  # someone else's now
    session.close()
    reporter.on_metrics([{"step": 1, "loss": 1.0}])
    clock.now += 1.0
    assert reporter.should_stop() is True and reporter.stop_reason == "lease_lost"
    assert _steps(studio, job_id) == []


def test_a_checkpoint_flushes_first_and_becomes_the_resume_point(claimed, studio, tmp_path):
    job_id, reporter, _ = claimed
    reporter.on_metrics([{"step": s, "loss": 1.0} for s in (1, 2, 3)])
    reporter.on_checkpoint(str(tmp_path), 3)
    job = _job(studio, job_id)
    assert (job.last_checkpoint_path, job.last_checkpoint_step) == (str(tmp_path), 3)
    assert _steps(studio, job_id) == [1, 2, 3]


def test_hooks_are_the_trainers_dataclass(claimed):
    _, reporter, _ = claimed
    hooks = reporter.hooks()
    assert isinstance(hooks, TrainHooks) and hooks.should_stop() is False
