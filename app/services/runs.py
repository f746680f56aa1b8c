"""Runs as people look at them: one summary per job for the runs table and the run page.

A summary joins the job row with what its metric rows say (last loss, a short loss trace for a
sparkline, the recent step rate for an ETA). Also here: deleting a finished run with its files, and
the spec for "clone into a new run". Everything is read from the database, so any web process (after
a reload, in a second browser, after a restart) shows the same thing.
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Artifact, Job, Metric
from app.services.jobs import JobStateError, JobStatus, get_job, list_jobs
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

SPARK_POINTS = 40
RATE_WINDOW = 200  # recent metric rows behind the ETA (rows arrive in batches, about one a second)
MIN_RATE_SPAN_SECONDS = 3.0


@dataclass
class RunSummary:
    id: int
    name: str
    status: str
    message: str
    error_hint: str | None
    base_model: str
    method: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress_step: int
    progress_total: int | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    last_loss: float | None = None
    last_eval_loss: float | None = None
    loss_trace: list[float] = field(default_factory=list)
    seconds_per_step: float | None = None
    kind: str = "train"  # "combine" for a combination (app.services.combining): no training, no metrics

    @property
    def terminal(self) -> bool:
        return JobStatus(self.status).terminal

    @property
    def fraction(self) -> float | None:
        if self.status == JobStatus.SUCCEEDED.value:
            return 1.0
        if not self.progress_total:
            return None
        return min(self.progress_step / self.progress_total, 1.0)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return max((end - self.started_at).total_seconds(), 0.0)

    @property
    def eta_seconds(self) -> float | None:
        if self.status != JobStatus.RUNNING.value or not self.progress_total or self.seconds_per_step is None:
            return None
        return max(self.progress_total - self.progress_step, 0) * self.seconds_per_step


def _loss_trace(session: Session, job: Job) -> list[float]:
    stride = max((job.progress_total or job.progress_step or 1) // SPARK_POINTS, 1)
    stmt = select(Metric.loss).where(Metric.job_id == job.id, Metric.loss.is_not(None), Metric.step % stride == 0).order_by(Metric.step, Metric.id)
    return [float(v) for v in session.scalars(stmt.limit(4 * SPARK_POINTS))]


def _seconds_per_step(session: Session, job_id: int) -> float | None:
    rows = session.execute(
        select(Metric.step, Metric.created_at).where(Metric.job_id == job_id, Metric.loss.is_not(None)).order_by(Metric.step.desc()).limit(RATE_WINDOW)
    ).all()
    if len(rows) < 2:
        return None
    (last_step, last_at), (first_step, first_at) = rows[0], rows[-1]
    span = (last_at - first_at).total_seconds()
    if last_step <= first_step or span < MIN_RATE_SPAN_SECONDS:
        return None  # rows of one or two batches: too soon for a rate
    return span / (last_step - first_step)


def summarize(session: Session, job: Job, *, with_trace: bool = True) -> RunSummary:
    last = session.execute(
        select(Metric.loss).where(Metric.job_id == job.id, Metric.loss.is_not(None)).order_by(Metric.step.desc(), Metric.id.desc()).limit(1)
    ).scalar()
    last_eval = session.execute(
        select(Metric.eval_loss).where(Metric.job_id == job.id, Metric.eval_loss.is_not(None)).order_by(Metric.step.desc(), Metric.id.desc()).limit(1)
    ).scalar()
    return RunSummary(
        id=job.id,
        name=job.name,
        status=job.status,
        message=job.message,
        error_hint=job.error_hint,
        base_model=job.base_model,
        method=job.method,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress_step=job.progress_step,
        progress_total=job.progress_total,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        last_loss=last,
        last_eval_loss=last_eval,
        loss_trace=_loss_trace(session, job) if with_trace else [],
        seconds_per_step=_seconds_per_step(session, job.id) if job.status == JobStatus.RUNNING.value else None,
        kind=str((job.config or {}).get("kind") or "train") if isinstance(job.config, dict) else "train",
    )


def list_runs(session: Session, *, status: JobStatus | None = None, limit: int = 100) -> list[RunSummary]:
    """Newest first, each with its last loss and a loss trace for a sparkline."""
    session.expire_all()  # rows another process changed since this session last read them
    runs = [summarize(session, job) for job in list_jobs(session, status=status, limit=limit)]
    session.commit()  # end the read transaction so the next poll sees new rows
    return runs


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    session.commit()
    return {status: count for status, count in rows}


def get_run(session: Session, *, job_id: int) -> tuple[RunSummary, Job]:
    """The summary and the job row (config, log tail, artifacts) of one run."""
    job = get_job(session, job_id=job_id)
    summary = summarize(session, job, with_trace=False)
    _ = list(job.artifacts)  # load them before the session ends the transaction
    session.commit()
    return summary, job


def clone_spec(session: Session, *, job_id: int) -> dict[str, Any]:
    """The job spec of an earlier run, to prefill a new one."""
    job = get_job(session, job_id=job_id)
    spec = copy.deepcopy(job.config)
    spec["name"] = f"Copy of {job.name}"[:200]
    session.commit()
    return spec


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def delete_run(session: Session, *, job_id: int, settings: Settings | None = None) -> None:
    """Delete a finished run: its row, metric and artifact rows, and its files under the data directory.

    A queued or running job must be cancelled first (its worker may still be writing files).
    Files outside the data directory (an artifact someone recorded elsewhere) are left alone.
    """
    settings = settings or get_settings()
    job = get_job(session, job_id=job_id)
    if not JobStatus(job.status).terminal:
        raise JobStateError(f"run {job_id} is still {job.status}; cancel it first, then delete it")
    paths = [Path(a.path) for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id)) if a.kind != "hub_push"]
    paths.append(settings.jobs_dir / str(job_id))
    session.execute(Metric.__table__.delete().where(Metric.job_id == job_id))
    session.execute(Artifact.__table__.delete().where(Artifact.job_id == job_id))
    session.delete(job)
    session.commit()
    for path in paths:
        if not _inside(path, settings.data_dir):
            log.info("run %s: leaving %s in place (outside the data directory)", job_id, path)
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
