"""Jobs: create, list and cancel them, and the worker's side of their lifecycle.

The lifecycle is a small state machine, written down once in ALLOWED_TRANSITIONS. Every status change
goes through transition(), a conditional UPDATE that also writes the message and timestamps, so two
processes racing on one job cannot both win: a claim by a duplicate delivery, a late renewal by a
worker whose lease expired, or a cancel racing a start all resolve in the database.

A running job holds a lease (owner + expiry) that its worker renews. Writes made on behalf of a run
(metrics, checkpoints, logs, the final status) are fenced by the owner token, so a run that lost its
lease can no longer change the job. The reaper requeues jobs whose lease expired (their worker died)
to resume from the last checkpoint, up to max_attempts, and rings the broker again for queued jobs no
worker picked up (a lost message).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app import broker
from app.db.base import utcnow
from app.db.models import Artifact, Job, Metric
from app.jobspec import parse_job_spec
from app.services.files import describe_path
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
LOG_LINE_CHARS = 2000
METRIC_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "padding_share")


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return not ALLOWED_TRANSITIONS[self]


ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # queued -> running: a worker claimed it; -> cancelled: cancelled before it started;
    # -> failed: found invalid before training started.
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running -> running: a new attempt takes over a run whose lease expired (claim_job only);
    # running -> queued: its process died or its worker stopped; it resumes from the last checkpoint.
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class ArtifactKind(str, Enum):
    ADAPTER = "adapter"
    CHECKPOINT = "checkpoint"
    MERGED = "merged"
    BUNDLE = "bundle"
    HUB_PUSH = "hub_push"


class JobNotFound(LookupError):
    def __init__(self, job_id: int):
        self.job_id = job_id
        super().__init__(f"there is no job {job_id}; `peft-studio status` lists the jobs")


class JobStateError(ValueError):
    """The request does not fit the job's state (e.g. cancelling a finished job)."""


@dataclass(frozen=True)
class Claim:
    """What a worker got by claiming a job: the lease and where to resume from."""

    job_id: int
    owner: str
    attempt: int
    max_attempts: int
    config: dict[str, Any]
    resume_from: str | None
    resume_step: int | None


@dataclass
class ReapReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)


def transition(
    session: Session,
    *,
    job_id: int,
    to: JobStatus,
    message: str,
    owner: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    values: dict[str, Any] | None = None,
) -> bool:
    """Move job `job_id` to `to` if its current status allows it (and `where` and `owner` match).

    The only writer of Job.status. Returns whether the row changed; the caller commits.
    """
    sources = [s.value for s, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    now = utcnow()
    vals: dict[str, Any] = {"status": to.value, "message": message, "updated_at": now}
    if to is JobStatus.RUNNING:
        vals["started_at"] = func.coalesce(Job.started_at, now)
    if to is not JobStatus.RUNNING:
        vals.update(lease_owner=None, lease_expires_at=None, worker_pid=None)
    if to is JobStatus.QUEUED:
        vals["enqueued_at"] = now
    if to.terminal:
        vals["finished_at"] = now
    vals.update(values or {})
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(sources), *where).values(**vals)
    if owner is not None:
        stmt = stmt.where(Job.lease_owner == owner)
    return session.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1


# --- people's side: create, look, cancel -------------------------------------------------------


def create_job(session: Session, *, spec: dict[str, Any], settings: Settings | None = None) -> Job:
    """Validate `spec` (raises app.jobspec.JobSpecError listing every problem), store it queued and ring a worker."""
    settings = settings or get_settings()
    parsed = parse_job_spec(spec)
    if parsed.dataset.source == "stored":  # the stored dataset exists, its mapping fits; its path goes into the spec
        from app.services.datasets import resolve_job_spec

        parsed = resolve_job_spec(session, parsed)
    elif parsed.dataset.source in ("file", "jsonl"):  # only the STUDIO_DATASET_ROOTS rule; existence is the worker's check
        from app.services.datasets import check_job_path

        check_job_path(parsed, settings)
    method = str(parsed.method["peft_type"]).upper()
    now = utcnow()
    job = Job(
        name=(parsed.name or f"{method} on {parsed.base_model}")[:200],
        status=JobStatus.QUEUED.value,
        config=parsed.to_dict(),
        base_model=parsed.base_model,
        method=method,
        attempt=0,
        max_attempts=settings.max_attempts,
        message="Waiting for a worker.",
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )
    session.add(job)
    session.commit()
    broker.ring(job.id, settings)
    return job


def get_job(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(session: Session, *, status: JobStatus | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
    """Newest first."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    return list(session.scalars(stmt))


def request_cancel(session: Session, *, job_id: int) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next step (its worker confirms)."""
    job = get_job(session, job_id=job_id)
    if JobStatus(job.status).terminal:
        raise JobStateError(f"job {job_id} has already {job.status}; there is nothing to cancel")
    live = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
    session.execute(update(Job).where(Job.id == job_id, Job.status.in_(live)).values(cancel_requested=True, updated_at=utcnow()))
    if not transition(session, job_id=job_id, to=JobStatus.CANCELLED, message="Cancelled before it started.", where=[Job.status == JobStatus.QUEUED.value]):
        session.execute(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value).values(message="Cancelling: the run stops after its current step.")
        )
    session.commit()
    return get_job(session, job_id=job_id)


# --- worker's side: claim, lease, finish, requeue ---------------------------------------------


def claim_job(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> Claim | None:
    """Take job `job_id` for one attempt, or None when it is not ours to run (duplicate delivery, taken, done).

    One conditional UPDATE: the job must be queued, or running with an expired lease, have attempts
    left and no cancel request. It increments the attempt and sets the lease.
    """
    now = utcnow()
    claimable = (Job.status == JobStatus.QUEUED.value) | ((Job.status == JobStatus.RUNNING.value) & (Job.lease_expires_at < now))
    won = transition(
        session,
        job_id=job_id,
        to=JobStatus.RUNNING,
        message="Starting.",
        where=[claimable, Job.attempt < Job.max_attempts, Job.cancel_requested.is_(False)],
        values={"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=lease_seconds), "attempt": Job.attempt + 1, "worker_pid": None},
    )
    if not won:
        session.rollback()
        return None
    job = get_job(session, job_id=job_id)
    resume = job.last_checkpoint_path if job.last_checkpoint_path and Path(job.last_checkpoint_path).exists() else None
    step = job.last_checkpoint_step if resume else None
    if resume:
        job.message = f"Resuming from step {step} (attempt {job.attempt} of {job.max_attempts})."
    elif job.attempt > 1:
        job.message = f"Starting again from the beginning (attempt {job.attempt} of {job.max_attempts}): no checkpoint was saved."
    else:
        job.message = "Starting."
    # Rows logged after the checkpoint we resume from are logged again by this attempt.
    stale = Metric.__table__.delete().where(Metric.job_id == job_id)
    session.execute(stale.where(Metric.step > step) if step is not None else stale)
    job.progress_step = step or 0
    session.commit()
    return Claim(job.id, owner, job.attempt, job.max_attempts, dict(job.config), resume, step)


def renew_lease(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend our lease; False means it was lost (another attempt owns the job, or it was finished)."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    ok = session.execute(stmt).rowcount == 1
    session.commit()
    return ok


def set_worker_pid(session: Session, *, job_id: int, owner: str, pid: int | None) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(worker_pid=pid))
    session.commit()


def is_cancel_requested(session: Session, *, job_id: int) -> bool:
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    session.commit()
    return bool(flag)


def finish_job(
    session: Session,
    *,
    job_id: int,
    owner: str,
    status: JobStatus,
    message: str,
    hint: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """End our attempt in a terminal status; False when we no longer own the job."""
    if not status.terminal:
        raise ValueError(f"finish_job needs a terminal status, got {status.value}")
    values: dict[str, Any] = {"error_hint": hint}
    if result is not None:
        values["result"] = result
    ok = transition(session, job_id=job_id, to=status, message=message, owner=owner, values=values)
    session.commit()
    return ok


def requeue_job(
    session: Session,
    *,
    job_id: int,
    owner: str | None,
    reason: str,
    count_attempt: bool = True,
    ring: bool = True,
    settings: Settings | None = None,
) -> JobStatus | None:
    """After a run died (or its worker stopped): queue it to resume, or fail it when out of attempts.

    `reason` says in words what happened. count_attempt=False gives the attempt back (a worker shutting
    down is not the job's fault); ring=False leaves sending the message to the caller. Returns the new
    status, or None when the job was not ours to requeue.
    """
    status = _requeue_or_fail(session, job_id=job_id, owner=owner, reason=reason, count_attempt=count_attempt)
    session.commit()
    if status is JobStatus.QUEUED and ring:
        broker.ring(job_id, settings)
    return status


def _requeue_or_fail(
    session: Session, *, job_id: int, owner: str | None, reason: str, count_attempt: bool, where: Sequence[ColumnElement[bool]] = ()
) -> JobStatus | None:
    job = get_job(session, job_id=job_id)
    attempts_used = job.attempt if count_attempt else job.attempt - 1
    resume = f"step {job.last_checkpoint_step}" if job.last_checkpoint_step else "the beginning (no checkpoint yet)"
    if attempts_used < job.max_attempts:
        message = f"{reason} It will resume from {resume} (attempt {attempts_used + 1} of {job.max_attempts})."
        values = {} if count_attempt else {"attempt": Job.attempt - 1}
        if transition(session, job_id=job_id, to=JobStatus.QUEUED, message=message, owner=owner, where=where, values=values):
            return JobStatus.QUEUED
        return None
    message = f"{reason} Gave up after {job.max_attempts} attempts."
    hint = (
        "If it ran out of memory, lower training.batch_size or training.max_seq_length, or turn on "
        "training.gradient_checkpointing; the log tail shows the last lines of each attempt."
    )
    if transition(session, job_id=job_id, to=JobStatus.FAILED, message=message, owner=owner, where=where, values={"error_hint": hint}):
        return JobStatus.FAILED
    return None


def reap(session: Session, *, settings: Settings | None = None, redeliver_all: bool = False) -> ReapReport:
    """Recover from vanished workers and lost messages; safe to run anywhere, any number of times.

    Commits, then sends a message for every job it requeued or found waiting too long (all queued jobs
    when `redeliver_all`, as at worker start). Duplicates are harmless: claim_job lets one through.
    """
    settings = settings or get_settings()
    report = ReapReport()
    reap_expired(session, report=report)
    stale = stale_queued(session, settings=settings, everything=redeliver_all, report=report)
    session.commit()
    for job_id in [*report.requeued, *stale]:
        if broker.ring(job_id, settings) and job_id in stale:
            report.redelivered.append(job_id)
    return report


def training_jobs() -> ColumnElement[bool]:
    """Rows the training task runs: not the other kinds of job (config "kind", e.g. combinations), whose
    own reapers requeue or fail them in their own words."""
    kind = Job.config["kind"].as_string()
    return or_(kind.is_(None), kind == "train")


def reap_expired(session: Session, *, report: ReapReport) -> None:
    """Running jobs whose lease expired (their worker died): requeue to resume from the last checkpoint
    while attempts are left, else fail them with the reason; cancel those with a pending cancel."""
    expired = [Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < utcnow()]
    for job_id, cancel in session.execute(select(Job.id, Job.cancel_requested).where(*expired)).all():
        if cancel:
            if transition(session, job_id=job_id, to=JobStatus.CANCELLED, message="Cancelled (its worker stopped before confirming).", where=expired):
                report.cancelled.append(job_id)
            continue
        if not session.scalar(select(training_jobs()).where(Job.id == job_id)):
            continue  # another kind of job: its own reaper words it
        reason = "Its worker stopped responding (no lease renewal)."
        status = _requeue_or_fail(session, job_id=job_id, owner=None, reason=reason, count_attempt=True, where=expired)
        if status is JobStatus.QUEUED:
            report.requeued.append(job_id)
        elif status is JobStatus.FAILED:
            report.failed.append(job_id)


def stale_queued(session: Session, *, settings: Settings, everything: bool, report: ReapReport) -> list[int]:
    """Queued jobs no worker took within redeliver_after_seconds (or all): their clock restarts, the caller
    sends them again. Queued jobs with a cancel request are cancelled instead."""
    now = utcnow()
    queued = [Job.status == JobStatus.QUEUED.value]
    for job_id in session.scalars(select(Job.id).where(*queued, Job.cancel_requested.is_(True))).all():
        if transition(session, job_id=job_id, to=JobStatus.CANCELLED, message="Cancelled before it started.", where=queued):
            report.cancelled.append(job_id)
    queued.append(training_jobs())  # other kinds of job are rung by their own reapers
    waiting = queued if everything else [*queued, Job.enqueued_at < now - timedelta(seconds=settings.redeliver_after_seconds)]
    stale = list(session.scalars(select(Job.id).where(*waiting, Job.cancel_requested.is_(False))).all())
    if stale:
        session.execute(update(Job).where(Job.id.in_(stale), *queued).values(enqueued_at=now))
    return stale


# --- what a run reports: metrics, checkpoints, logs, artifacts --------------------------------


def _owns(session: Session, job_id: int, owner: str | None) -> bool:
    """Lock the job row and check the lease (no check when owner is None)."""
    if owner is None:
        return True
    found = session.scalar(select(Job.id).where(Job.id == job_id, Job.lease_owner == owner).with_for_update())
    return found is not None


def record_metrics(session: Session, *, job_id: int, rows: Iterable[dict[str, Any]], owner: str | None = None) -> int:
    """Insert a batch of metric rows in one statement; returns how many were written (0 if the lease was lost)."""
    clean = [{"job_id": job_id, "created_at": utcnow(), **{k: row.get(k) for k in METRIC_FIELDS}} for row in rows]
    if not clean or not _owns(session, job_id, owner):
        session.rollback()
        return 0
    session.execute(insert(Metric), clean)
    session.commit()
    return len(clean)


def record_progress(session: Session, *, job_id: int, owner: str, step: int, total: int | None) -> bool:
    """Progress of a running job; its message says where training is (it said "Starting." since the claim)."""
    message = f"Training: step {step:,} of {total:,}." if total else f"Training: step {step:,}."
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING.value)
        .values(progress_step=step, progress_total=total, message=message, updated_at=utcnow())
    )
    ok = session.execute(stmt).rowcount == 1
    session.commit()
    return ok


def record_checkpoint(session: Session, *, job_id: int, owner: str, path: str, step: int) -> bool:
    """Remember the newest resumable checkpoint; a restarted attempt resumes from it."""
    stmt = update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(last_checkpoint_path=path, last_checkpoint_step=step, updated_at=utcnow())
    ok = session.execute(stmt).rowcount == 1
    session.commit()
    return ok


def record_artifact(session: Session, *, job_id: int, kind: ArtifactKind, path: str | Path) -> Artifact:
    """Record a file or folder the job produced, with its size and sha256 (a Hub URL for hub_push)."""
    size: int | None = None
    digest: str | None = None
    if kind is not ArtifactKind.HUB_PUSH:
        size, digest = describe_path(Path(path))
    artifact = Artifact(job_id=job_id, kind=kind.value, path=str(path), size_bytes=size, sha256=digest, created_at=utcnow())
    session.add(artifact)
    session.commit()
    return artifact


def append_log(session: Session, *, job_id: int, lines: Sequence[str], owner: str | None = None) -> bool:
    """Append lines to the job's log tail (the last LOG_TAIL_LINES lines are kept; log_lines counts all)."""
    if not lines:
        return True
    if not _owns(session, job_id, owner):
        session.rollback()
        return False
    job = get_job(session, job_id=job_id)
    new = [line.rstrip("\n")[:LOG_LINE_CHARS] for line in lines]
    kept = (job.log_tail.splitlines() if job.log_tail else []) + new
    job.log_tail = "\n".join(kept[-LOG_TAIL_LINES:])
    job.log_lines = job.log_lines + len(new)
    session.commit()
    return True


def log_since(job: Job, seen: int) -> tuple[list[str], int]:
    """Lines appended since the reader had seen `seen` lines, and the new count (for `logs --follow`)."""
    tail = job.log_tail.splitlines() if job.log_tail else []
    missing = job.log_lines - seen
    return (tail[-missing:] if missing > 0 else []), job.log_lines
