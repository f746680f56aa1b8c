"""Supervise one claimed attempt: run the training child, keep the lease, honour cancels, record the ending.

The worker process never imports torch; training runs in a child process in its own session, so a
crash or an out-of-memory kill cannot take the worker down, and killing the child's process group
frees its (GPU) memory. While the child runs, the supervisor renews the job's lease, watches for a
cancel request (the child stops itself within a step; after a grace period it is killed) and for the
worker shutting down (the job goes back to the queue without using up an attempt).
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from app.db.session import session_scope
from app.jobspec import JobSpecError, parse_job_spec
from app.services import jobs
from app.services.jobs import ArtifactKind, Claim, JobStatus
from app.settings import Settings
from worker import lifecycle
from worker.outcome import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    attempt_file,
    describe_exit,
    read_outcome,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
CANCEL_POLL_SECONDS = 1.0
TERM_GRACE_SECONDS = 5.0
LOG_LINES_ON_CRASH = 20


class Ending(enum.Enum):
    EXITED = "exited"
    LEASE_LOST = "lease lost"
    SHUTDOWN = "worker shutting down"
    CANCEL_FORCED = "cancel forced"


def lease_owner() -> str:
    """A token naming this attempt's holder: host, worker pid and a nonce (unique per claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def supervise(claim: Claim, *, settings: Settings, stopping: threading.Event) -> None:
    """Run one attempt of a claimed job to its end and record the outcome on the job row."""
    try:
        parse_job_spec(claim.config)
    except JobSpecError as exc:
        _finish(claim, settings, JobStatus.FAILED, "The job's settings are invalid: " + "; ".join(exc.problems),
                hint="Fix these settings and submit the job again.")
        return
    job_dir = settings.jobs_dir / str(claim.job_id)
    try:
        proc = _spawn(claim, job_dir)
    except OSError as exc:
        _finish(claim, settings, JobStatus.FAILED, f"Could not start the training process: {exc}",
                hint=f"Check that the worker can write to {job_dir} (STUDIO_DATA_DIR).")
        return
    with session_scope(settings) as session:
        jobs.set_worker_pid(session, job_id=claim.job_id, owner=claim.owner, pid=proc.pid)
    ending = _watch(proc, claim, settings, stopping)
    _conclude(proc.returncode, ending, claim, job_dir, settings)


def _spawn(claim: Claim, job_dir: Path) -> subprocess.Popen[bytes]:
    log_path = attempt_file(job_dir, claim.attempt, "log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "worker.child", str(claim.job_id), claim.owner, str(claim.attempt), "--parent-pid", str(os.getpid())]
    if claim.resume_from:
        cmd += ["--resume-from", claim.resume_from]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.info("job %s: attempt %s started as pid %s (log: %s)", claim.job_id, claim.attempt, proc.pid, log_path)
    return proc


def _watch(proc: subprocess.Popen[bytes], claim: Claim, settings: Settings, stopping: threading.Event) -> Ending:
    """Wait for the child, renewing the lease and reacting to cancel requests and shutdown."""
    now = time.monotonic()
    next_renew, next_cancel_poll, cancel_deadline = now + settings.lease_seconds / 3, now + CANCEL_POLL_SECONDS, None
    while True:
        try:
            proc.wait(timeout=POLL_SECONDS)
            return Ending.EXITED
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if stopping.is_set():
            _stop(proc)
            return Ending.SHUTDOWN
        try:
            if now >= next_renew:
                with session_scope(settings) as session:
                    if not jobs.renew_lease(session, job_id=claim.job_id, owner=claim.owner, lease_seconds=settings.lease_seconds):
                        log.warning("job %s: lease lost to another attempt; stopping this one", claim.job_id)
                        _stop(proc)
                        return Ending.LEASE_LOST
                next_renew = now + settings.lease_seconds / 3
            if cancel_deadline is None and now >= next_cancel_poll:
                with session_scope(settings) as session:
                    if jobs.is_cancel_requested(session, job_id=claim.job_id):
                        cancel_deadline = now + settings.cancel_grace_seconds
                next_cancel_poll = now + CANCEL_POLL_SECONDS
        except SQLAlchemyError as exc:  # keep the run going; the lease has slack for a short outage
            log.warning("job %s: database unavailable while supervising (%s); retrying", claim.job_id, exc)
        if cancel_deadline is not None and now >= cancel_deadline:
            _stop(proc)
            return Ending.CANCEL_FORCED


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL it; returns once the child is gone (memory freed)."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _conclude(returncode: int | None, ending: Ending, claim: Claim, job_dir: Path, settings: Settings) -> None:
    """Translate how the child ended into the job's status."""
    if ending is Ending.LEASE_LOST or returncode == EXIT_LEASE_LOST:
        log.info("job %s: attempt %s ended because another attempt owns the job", claim.job_id, claim.attempt)
        return
    if ending is Ending.SHUTDOWN:
        with session_scope(settings) as session:
            jobs.requeue_job(session, job_id=claim.job_id, owner=claim.owner, reason="Its worker was shut down.", count_attempt=False,
                             ring=False)
        lifecycle.hand_back(claim.job_id, settings)
        return
    with session_scope(settings) as session:
        job = jobs.get_job(session, job_id=claim.job_id)
        step, cancel_requested = job.progress_step, job.cancel_requested
    outcome = read_outcome(attempt_file(job_dir, claim.attempt, "outcome.json"))
    if ending is Ending.CANCEL_FORCED:
        _finish(claim, settings, JobStatus.CANCELLED, f"Cancelled at step {step}; the run did not stop by itself within {settings.cancel_grace_seconds:g} s, so it was killed.")
    elif returncode == EXIT_OK:
        _succeed(claim, settings, outcome.get("result") or {})
    elif returncode == EXIT_CANCELLED:
        _finish(claim, settings, JobStatus.CANCELLED, f"Cancelled at step {step} as requested.")
    elif returncode == EXIT_FAILED:
        _finish(claim, settings, JobStatus.FAILED, outcome.get("message") or "The run failed; see the log.", hint=outcome.get("hint"))
    elif cancel_requested:
        _finish(claim, settings, JobStatus.CANCELLED, f"Cancelled at step {step}.")
    else:
        reason = describe_exit(returncode if returncode is not None else -signal.SIGKILL)
        with session_scope(settings) as session:
            jobs.append_log(session, job_id=claim.job_id, lines=[f"--- attempt {claim.attempt}: {reason}", *_tail(attempt_file(job_dir, claim.attempt, "log"))],
                            owner=claim.owner)
            jobs.requeue_job(session, job_id=claim.job_id, owner=claim.owner, reason=f"{reason[:-1]} at step {step}.", settings=settings)


def _succeed(claim: Claim, settings: Settings, result: dict) -> None:
    adapter_dir = result.get("adapter_dir")
    with session_scope(settings) as session:
        if adapter_dir:
            jobs.record_artifact(session, job_id=claim.job_id, kind=ArtifactKind.ADAPTER, path=adapter_dir)
    loss = result.get("final_loss")
    eval_loss = result.get("final_eval_loss")
    message = f"Finished {result.get('steps', '?')} steps"
    if loss is not None:
        message += f"; final loss {loss:.4g}"
    if eval_loss is not None:
        message += f" (eval {eval_loss:.4g})"
    _finish(claim, settings, JobStatus.SUCCEEDED, message + ".", result=result)


def _finish(claim: Claim, settings: Settings, status: JobStatus, message: str, *, hint: str | None = None, result: dict | None = None) -> None:
    with session_scope(settings) as session:
        if not jobs.finish_job(session, job_id=claim.job_id, owner=claim.owner, status=status, message=message, hint=hint, result=result):
            log.warning("job %s: could not record %s: the job is no longer ours", claim.job_id, status.value)


def _tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-LOG_LINES_ON_CRASH:]
    except OSError:
        return []
