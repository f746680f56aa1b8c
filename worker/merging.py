"""Supervise one claimed merge: run the merge child, keep the merge lease, record how it ended.

The worker never imports torch; the merge runs in worker.merge_child. While it runs the supervisor
renews the merge lease on the run's row; when the lease is lost (another worker took over after this
one looked dead) or the worker shuts down, the child is stopped. Every ending is a merge_status with a
message in words.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from app.db.session import session_scope
from app.services import merges
from app.settings import Settings
from worker.merge_child import merge_dir
from worker.outcome import EXIT_FAILED, EXIT_LEASE_LOST, EXIT_OK, describe_exit, read_outcome
from worker.supervisor import POLL_SECONDS, _stop

log = logging.getLogger(__name__)


def supervise_merge(job_id: int, owner: str, *, settings: Settings, stopping: threading.Event) -> None:
    """Run the claimed merge of run `job_id` to its end and record the ending on the run's row."""
    folder = merge_dir(settings, job_id)
    outcome_file = folder / "outcome.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        outcome_file.unlink(missing_ok=True)  # an earlier merge's ending must not be read as this one's
        with (folder / "merge.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "worker.merge_child", str(job_id), owner, "--parent-pid", str(os.getpid())],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except OSError as exc:
        _end(settings, job_id, owner, False, f"Could not start the merge process: {exc}. Check that the worker can write to {folder}.")
        return
    ending = _watch(proc, job_id, owner, settings, stopping)
    if ending == "lease lost":
        return
    if ending == "shutdown":
        _end(settings, job_id, owner, False, "The worker was shut down during the merge; merge again.")
        return
    outcome = read_outcome(outcome_file)
    if proc.returncode == EXIT_OK:
        result = outcome.get("result") or {}
        size_mib = int(result.get("bytes", 0)) / 2**20
        _end(settings, job_id, owner, True, f"Merged into the base model: {result.get('shards', '?')} shard(s), {size_mib:,.1f} MiB.",
             ok_folder=True)
    elif proc.returncode == EXIT_FAILED:
        _end(settings, job_id, owner, False, outcome.get("message") or "The merge failed; see the merge log.")
    elif proc.returncode != EXIT_LEASE_LOST:
        reason = describe_exit(proc.returncode).replace("training process", "merge process")
        _end(settings, job_id, owner, False, f"{reason} Merge again, on a worker with more memory if it was killed.")


def _watch(proc: subprocess.Popen[bytes], job_id: int, owner: str, settings: Settings, stopping: threading.Event) -> str:
    next_renew = time.monotonic() + settings.lease_seconds / 3
    while True:
        try:
            proc.wait(timeout=POLL_SECONDS)
            return "exited"
        except subprocess.TimeoutExpired:
            pass
        if stopping.is_set():
            _stop(proc)
            return "shutdown"
        if time.monotonic() >= next_renew:
            try:
                with session_scope(settings) as session:
                    if not merges.renew_merge_lease(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds):
                        log.warning("merge of run %s: lease lost; stopping this merge", job_id)
                        _stop(proc)
                        return "lease lost"
            except SQLAlchemyError as exc:  # the lease has slack for a short outage
                log.warning("merge of run %s: database unavailable (%s); retrying", job_id, exc)
            next_renew = time.monotonic() + settings.lease_seconds / 3


def _end(settings: Settings, job_id: int, owner: str, ok: bool, message: str, *, ok_folder: bool = False) -> None:
    folder = merges.merged_dir(settings, job_id) if ok_folder else None
    with session_scope(settings) as session:
        if not merges.finish_merge(session, job_id=job_id, owner=owner, ok=ok, message=message, folder=folder):
            log.warning("merge of run %s: could not record its ending: the merge is no longer ours", job_id)

