"""Merging a succeeded run's adapter into its base model, as a background step on the run's own row.

A merge is one step after a run, never a run of its own, so it lives in a few merge_* columns of the
run's Job row instead of a second kind of job. The DB is the source of truth: request_merge() sets
merge_status 'queued' and rings the worker by task name (MERGE_TASK, the message carries only the job
id); the worker claims it with one conditional UPDATE (queued -> running, with an owner token and a
lease), so a duplicate delivery gets nothing and two merges of one run never run at once. Progress,
the ending and its message are written only by the lease owner. A merge whose worker died (lease
expired) may be requested again.

The web process imports this module: no torch, no worker package.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Artifact, Job
from app.services.artifact_files import describe_folder
from app.services.artifacts import latest_artifact
from app.services.jobs import ArtifactKind, JobStateError, JobStatus, get_job
from app.services.row_tasks import RowTask
from app.settings import Settings, get_settings
from peft_core.registry import MethodSpec, registered_methods

MERGE_TASK = "studio.merge"
WORKER_GONE = "Its worker stopped responding during the merge; merge again."


class MergeStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


MERGE = RowTask(prefix="merge", status=MergeStatus, task=MERGE_TASK, noun="merge", worker_gone=WORKER_GONE)


def merged_dir(settings: Settings, job_id: int) -> Path:
    """Where a run's merged model is written: next to its training files."""
    return settings.jobs_dir / str(job_id) / "merged"


def ring_merge(job_id: int, settings: Settings | None = None) -> bool:
    """Ask a worker to merge run `job_id`; False (logged) when the broker is down (the request stays queued)."""
    return MERGE.ring(job_id, settings or get_settings())


def request_merge(session: Session, *, job_id: int, settings: Settings | None = None) -> Job:
    """Queue the merge of run `job_id`; raises JobStateError (in words) when it cannot be merged now.

    Refused unless the run succeeded and has an adapter, and while a merge of it is running (one whose
    worker vanished, lease expired, may be asked again). Asking again while it is queued sends the
    message again (it may have been lost; the claim lets one delivery through). A merged run may be
    merged again: the new files replace the old ones once written.
    """
    settings = settings or get_settings()
    job = get_job(session, job_id=job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise JobStateError(f"run {job_id} is {job.status}; only a run that succeeded can be merged into its base model")
    if latest_artifact(session, job_id=job_id, kind=ArtifactKind.ADAPTER) is None:
        raise JobStateError(f"run {job_id} has no saved adapter to merge")
    if not method_can_merge(job):
        title = method_title(job)
        raise JobStateError(
            f"run {job_id} trained {title} adapters, which cannot be merged into the base model's weights (prompt learning "
            "adds to the model's input instead); use the adapter with the base model, it loads in peft and peft_core"
        )
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, MERGE.idle(now))
        .values(merge_status=MergeStatus.QUEUED.value, merge_message="Waiting for a worker to merge.", merge_done=0, merge_total=None,
                merge_owner=None, merge_lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:
        session.rollback()
        if get_job(session, job_id=job_id).merge_status != MergeStatus.QUEUED.value:
            raise JobStateError(f"run {job_id} is already being merged; wait for that merge to end")
    session.commit()
    ring_merge(job_id, settings)
    return get_job(session, job_id=job_id)


def _method_spec(job: Job) -> MethodSpec | None:
    peft_type = ((job.config or {}).get("method") or {}).get("peft_type")
    return registered_methods().get(str(peft_type).upper()) if peft_type else None


def method_can_merge(job: Job) -> bool:
    """Whether the run's method changes weights that a merge can fold in (prompt learning does not)."""
    spec = _method_spec(job)
    return spec is None or spec.can_merge


def method_title(job: Job) -> str:
    spec = _method_spec(job)
    return (spec.title or spec.peft_type.value) if spec is not None else "its method"


def worker_vanished(job: Job) -> bool:
    """A merge recorded as running whose worker stopped renewing its lease (it died): it may be asked again."""
    return MERGE.worker_vanished(job)


def claim_merge(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Take the queued merge of run `job_id` (False: not ours: a duplicate delivery, taken, or not requested)."""
    return MERGE.claim(session, job_id=job_id, owner=owner, lease_seconds=lease_seconds, message="Merging: starting.")


def renew_merge_lease(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    return MERGE.renew(session, job_id=job_id, owner=owner, lease_seconds=lease_seconds)


def record_merge_progress(session: Session, *, job_id: int, owner: str, done: int, total: int) -> bool:
    """Shards written so far, and the message a person reads while waiting."""
    return MERGE.write(session, job_id=job_id, owner=owner, done=done, total=total, message=f"Merging: shard {done} of {total} written.")


def finish_merge(session: Session, *, job_id: int, owner: str, ok: bool, message: str, folder: Path | None = None) -> bool:
    """End our merge; on success the merged folder's artifact (size, sha256) is recorded in the same commit,
    so no reader sees a succeeded merge without its files. False when the merge is no longer ours."""
    described = describe_folder(folder) if ok and folder is not None else None  # hashing takes a while: outside the transaction
    if not MERGE.end(session, job_id=job_id, owner=owner, ok=ok, message=message):
        return False
    if described is not None:
        size, digest = described
        session.add(Artifact(job_id=job_id, kind=ArtifactKind.MERGED.value, path=str(folder), size_bytes=size, sha256=digest, created_at=utcnow()))
    session.commit()
    return True


def reap_merges(session: Session, *, settings: Settings | None = None) -> tuple[list[int], list[int]]:
    """The worker's reaper, for merges: fail those whose worker died (lease expired) with a message in
    words, and ring again for those left queued past redeliver_after_seconds (a lost message).
    Returns (failed, rung); safe to run anywhere, any number of times."""
    return MERGE.reap(session, settings=settings or get_settings())
