"""Supervise one claimed merge: run the merge child, keep the merge lease, record how it ended.

The worker never imports torch; the merge runs in worker.merge_child. While it runs the supervisor
renews the merge lease on the run's row; when the lease is lost (another worker took over after this
one looked dead) or the worker shuts down, the child is stopped. Every ending is a merge_status with a
message in words.
"""

from __future__ import annotations

import logging
import threading

from app.db.session import session_scope
from app.services import merges
from app.settings import Settings
from worker.child_process import OUTCOME_FILE, lease_check, start_child, watch
from worker.merge_child import merge_dir
from worker.outcome import EXIT_FAILED, EXIT_LEASE_LOST, EXIT_OK, describe_exit, read_outcome

log = logging.getLogger(__name__)


def supervise_merge(job_id: int, owner: str, *, settings: Settings, stopping: threading.Event) -> None:
    """Run the claimed merge of run `job_id` to its end and record the ending on the run's row."""
    folder = merge_dir(settings, job_id)
    try:
        proc = start_child("worker.merge_child", job_id, owner, folder, "merge.log")
    except OSError as exc:
        _end(settings, job_id, owner, False, f"Could not start the merge process: {exc}. Check that the worker can write to {folder}.")
        return
    renew = lease_check(settings, lambda session: merges.renew_merge_lease(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds),
                        lost=f"merge of run {job_id}: lease lost; stopping this merge", logger=log)
    ending = watch(proc, stopping, [renew], label=f"merge of run {job_id}", logger=log)
    if ending == "lease lost":
        return
    if ending == "shutdown":
        _end(settings, job_id, owner, False, "The worker was shut down during the merge; merge again.")
        return
    outcome = read_outcome(folder / OUTCOME_FILE)
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


def _end(settings: Settings, job_id: int, owner: str, ok: bool, message: str, *, ok_folder: bool = False) -> None:
    folder = merges.merged_dir(settings, job_id) if ok_folder else None
    with session_scope(settings) as session:
        if not merges.finish_merge(session, job_id=job_id, owner=owner, ok=ok, message=message, folder=folder):
            log.warning("merge of run %s: could not record its ending: the merge is no longer ours", job_id)

