"""Supervise one claimed combination: run the combine child, keep the lease, honour a cancel, record the ending.

The worker never imports torch; the combination runs in worker.combine_child. While it runs the
supervisor renews the job's lease; when the lease is lost (the reaper failed it after this worker looked
dead), a cancel is requested or the worker shuts down, the child is stopped. On success the new adapter
is recorded as the job's adapter artifact (with its download's size and sha256, computed once here) before
the job turns succeeded, so nobody sees a succeeded combination without its adapter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import delete

from app.db.models import Artifact
from app.db.session import session_scope
from app.services import artifacts, combining, jobs
from app.services.jobs import ArtifactKind, JobStatus
from app.settings import Settings
from worker.child_process import OUTCOME_FILE, Check, lease_check, start_child, watch
from worker.combine_child import work_dir
from worker.outcome import EXIT_FAILED, EXIT_OK, describe_exit, read_outcome
from worker.supervisor import CANCEL_POLL_SECONDS

log = logging.getLogger(__name__)


def supervise_combine(job_id: int, owner: str, config: dict[str, Any], *, settings: Settings, stopping: threading.Event) -> None:
    """Run the claimed combination `job_id` to its end and record the ending on its row."""
    folder = work_dir(settings, job_id)
    try:
        proc = start_child("worker.combine_child", job_id, owner, folder, "combine.log")
    except OSError as exc:
        _end(settings, job_id, owner, JobStatus.FAILED, f"Could not start the combine process: {exc}. Check that the worker can write to {folder}.")
        return
    with session_scope(settings) as session:
        jobs.set_worker_pid(session, job_id=job_id, owner=owner, pid=proc.pid)
    checks = [lease_check(settings, lambda session: jobs.renew_lease(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds),
                          lost=f"combination {job_id}: lease lost; stopping it", logger=log),
              Check(CANCEL_POLL_SECONDS, lambda: _cancelled(job_id, settings))]
    ending = watch(proc, stopping, checks, label=f"combination {job_id}", logger=log)
    if ending == "lease lost":
        return
    if ending == "cancelled":
        _end(settings, job_id, owner, JobStatus.CANCELLED, "Cancelled while combining; nothing was saved.")
        return
    if ending == "shutdown":
        _end(settings, job_id, owner, JobStatus.FAILED, "The worker was shut down while combining; combine again.")
        return
    outcome = read_outcome(folder / OUTCOME_FILE)
    if proc.returncode == EXIT_OK:
        rank = int((outcome.get("result") or {}).get("rank", 0))
        _succeed(settings, job_id, owner, combining.success_message(config, rank), outcome.get("result") or {})
    elif proc.returncode == EXIT_FAILED:
        _end(settings, job_id, owner, JobStatus.FAILED, outcome.get("message") or "Combining failed; see the combine log.")
    else:
        reason = describe_exit(proc.returncode).replace("training process", "combine process")
        _end(settings, job_id, owner, JobStatus.FAILED, f"{reason} Combine again, on a worker with more memory if it was killed.")


def _cancelled(job_id: int, settings: Settings) -> str | None:
    with session_scope(settings) as session:
        return "cancelled" if jobs.is_cancel_requested(session, job_id=job_id) else None


def _succeed(settings: Settings, job_id: int, owner: str, message: str, result: dict[str, Any]) -> None:
    folder = combining.combined_dir(settings, job_id)
    artifacts.zip_checksum(folder)  # hashed once here and stored beside it, so the run page shows it at once
    with session_scope(settings) as session:
        artifact = jobs.record_artifact(session, job_id=job_id, kind=ArtifactKind.ADAPTER, path=folder)
        if not jobs.finish_job(session, job_id=job_id, owner=owner, status=JobStatus.SUCCEEDED, message=message, result=result):
            session.execute(delete(Artifact).where(Artifact.id == artifact.id))  # no longer ours: leave no adapter on a job we do not own
            session.commit()
            log.warning("combination %s: could not record its ending: it is no longer ours", job_id)


def _end(settings: Settings, job_id: int, owner: str, status: JobStatus, message: str) -> None:
    with session_scope(settings) as session:
        if not jobs.finish_job(session, job_id=job_id, owner=owner, status=status, message=message):
            log.warning("combination %s: could not record its ending: it is no longer ours", job_id)
