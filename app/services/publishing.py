"""Publishing a succeeded run (its adapter, or its merged model) to the Hugging Face Hub, as a background step on the run's row.

Same shape as merging (app.services.merges): request_publish() validates, records what to publish where
in the run's publish_* columns with status 'queued' and rings the worker by task name (the message
carries only the job id); the worker claims it with one conditional UPDATE, keeps a lease while it
uploads, and writes the ending in words. The reaper fails a publish whose worker died and rings again
for one left queued.

The token never travels in plain text: a token typed with a request is stored Fernet-encrypted in the
secrets table (saved as the studio's token when asked to remember it, otherwise as a one-shot secret of
this publish, deleted when it ends); the worker decrypts it just before the Hub call. Without one, the
worker uses STUDIO_HF_TOKEN or HF_TOKEN from its own environment.

The web process imports this module: no torch, no worker package, no huggingface_hub.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from enum import Enum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import broker, secrets
from app.db.base import utcnow
from app.db.models import Artifact, Job, Secret
from app.services.artifacts import latest_artifact
from app.services.jobs import ArtifactKind, JobStateError, JobStatus, get_job
from app.services.merges import MergeStatus
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

PUBLISH_TASK = "studio.publish"
SAVED_TOKEN = "hub_token"
TOKEN_ENV = ("STUDIO_HF_TOKEN", "HF_TOKEN")
WORKER_GONE = "Its worker stopped responding during the publish; publish again (files already on the Hub are not sent twice)."
_NAME = r"(?!.*(--|\.\.))[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"(?:{_NAME}/)?{_NAME}")


class PublishStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PublishTarget(str, Enum):
    ADAPTER = "adapter"
    MERGED = "merged"


class PublishRequestError(ValueError):
    """The publish request is invalid; the message names each bad field and what it accepts."""


def one_shot_name(job_id: int) -> str:
    """The secrets row holding a token given for this publish only (not remembered)."""
    return f"publish:{job_id}"


def _put_secret(session: Session, name: str, sealed: str) -> None:
    row = session.get(Secret, name)
    if row is None:
        session.add(Secret(name=name, ciphertext=sealed, updated_at=utcnow()))
    else:
        row.ciphertext, row.updated_at = sealed, utcnow()


def _clean_token(token: str) -> str:
    token = token.strip()
    if not token or any(c.isspace() for c in token) or len(token) > 500:
        raise PublishRequestError("token: paste one Hub access token (no spaces); create one at https://huggingface.co/settings/tokens")
    return token


def save_token(session: Session, *, token: str, settings: Settings | None = None) -> None:
    """Remember `token` (encrypted) as the studio's Hub token for later publishes."""
    _put_secret(session, SAVED_TOKEN, secrets.encrypt(settings or get_settings(), _clean_token(token)))
    session.commit()


def forget_token(session: Session) -> bool:
    """Delete the saved Hub token; True when there was one."""
    gone = session.execute(delete(Secret).where(Secret.name == SAVED_TOKEN)).rowcount > 0
    session.commit()
    return gone


def has_saved_token(session: Session) -> bool:
    return session.get(Secret, SAVED_TOKEN) is not None


def resolve_token(session: Session, *, job_id: int, settings: Settings | None = None) -> str | None:
    """The token for run `job_id`'s publish, decrypted, for the worker only: this publish's own, the saved one, or the environment."""
    settings = settings or get_settings()
    for name in (one_shot_name(job_id), SAVED_TOKEN):
        row = session.get(Secret, name)
        if row is not None:
            return secrets.decrypt(settings, row.ciphertext)
    return next((os.environ[v].strip() for v in TOKEN_ENV if os.environ.get(v, "").strip()), None)


def validate_request(job: Job, *, repo_id: str, target: str) -> list[str]:
    """Every problem with publishing `job` as asked, named as the user sees it (empty: fine)."""
    problems = []
    if not REPO_ID.fullmatch(repo_id or "") or repo_id.endswith(".git"):
        problems.append(f"repo: {repo_id!r} is not a Hub repo name; use 'name' or 'owner/name' with letters, digits, '-', '_' or '.' "
                        "(at most 96 each, not starting or ending with '-' or '.')")
    choices = [t.value for t in PublishTarget]
    if target not in choices:
        problems.append(f"target: {target!r} is not one of {', '.join(choices)}")
    if job.status != JobStatus.SUCCEEDED.value:
        problems.append(f"run {job.id} is {job.status}; only a run that succeeded can be published")
    elif target == PublishTarget.ADAPTER.value and not any(a.kind == ArtifactKind.ADAPTER.value for a in job.artifacts):
        problems.append(f"run {job.id} has no saved adapter to publish")
    elif target == PublishTarget.MERGED.value and (job.merge_status != MergeStatus.SUCCEEDED.value
                                                   or not any(a.kind == ArtifactKind.MERGED.value for a in job.artifacts)):
        problems.append(f"run {job.id} has no finished merge; merge it into its base model first, or publish the adapter")
    return problems


def request_publish(session: Session, *, job_id: int, repo_id: str, target: str = "adapter", private: bool = True,
                    token: str | None = None, remember: bool = False, settings: Settings | None = None) -> Job:
    """Queue the publish of run `job_id` to Hub repo `repo_id`.

    Raises PublishRequestError (bad input, every problem at once) or JobStateError (a publish of this run
    is already running). A token given here is stored encrypted, as the saved token when `remember`,
    otherwise for this publish only. Asking again while queued sends the message again.
    """
    settings = settings or get_settings()
    job = get_job(session, job_id=job_id)
    repo_id = (repo_id or "").strip()
    problems = validate_request(job, repo_id=repo_id, target=target)
    if token is not None and token.strip():
        try:
            token = _clean_token(token)
        except PublishRequestError as exc:
            problems.append(str(exc))
    if problems:
        raise PublishRequestError("cannot publish:\n" + "\n".join(f"  - {p}" for p in problems))
    now = utcnow()
    idle = (Job.publish_status.is_(None)) | Job.publish_status.in_([PublishStatus.SUCCEEDED.value, PublishStatus.FAILED.value]) | (
        (Job.publish_status == PublishStatus.RUNNING.value) & (Job.publish_lease_expires_at < now)
    )
    stmt = (
        update(Job)
        .where(Job.id == job_id, idle | (Job.publish_status == PublishStatus.QUEUED.value))
        .values(publish_status=PublishStatus.QUEUED.value, publish_message="Waiting for a worker to publish.", publish_target=target,
                publish_repo_id=repo_id, publish_private=private, publish_url=None, publish_commit=None, publish_owner=None,
                publish_lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:
        session.rollback()
        raise JobStateError(f"run {job_id} is being published right now; wait for that publish to end")
    if token:
        _put_secret(session, SAVED_TOKEN if remember else one_shot_name(job_id), secrets.encrypt(settings, token))
        if remember:
            session.execute(delete(Secret).where(Secret.name == one_shot_name(job_id)))
    session.commit()
    ring_publish(job_id, settings)
    session.expire_all()
    return get_job(session, job_id=job_id)


def ring_publish(job_id: int, settings: Settings | None = None) -> bool:
    """Ask a worker to publish run `job_id`; False (logged) when the broker is down (the request stays queued)."""
    settings = settings or get_settings()
    try:
        broker.client(settings).send_task(PUBLISH_TASK, args=[job_id], queue=settings.queue, retry=True,
                                          retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1})
    except Exception as exc:  # the request stays in the DB; asking again sends it again
        log.warning("publish of run %s is queued but the broker could not be reached (%s)", job_id, exc)
        return False
    return True


def worker_vanished(job: Job) -> bool:
    expires = job.publish_lease_expires_at
    return job.publish_status == PublishStatus.RUNNING.value and expires is not None and expires < utcnow()


def claim_publish(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Take the queued publish of run `job_id` (False: a duplicate delivery, taken, or not requested)."""
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.publish_status == PublishStatus.QUEUED.value)
        .values(publish_status=PublishStatus.RUNNING.value, publish_owner=owner, publish_lease_expires_at=now + timedelta(seconds=lease_seconds),
                publish_message="Publishing: preparing the files.", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    won = session.execute(stmt).rowcount == 1
    session.commit()
    return won


def _owned(job_id: int, owner: str) -> tuple:
    return (Job.id == job_id, Job.publish_owner == owner, Job.publish_status == PublishStatus.RUNNING.value)


def renew_publish_lease(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    stmt = update(Job).where(*_owned(job_id, owner)).values(publish_lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    ok = session.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1
    session.commit()
    return ok


def record_publish_progress(session: Session, *, job_id: int, owner: str, message: str) -> bool:
    stmt = update(Job).where(*_owned(job_id, owner)).values(publish_message=message, updated_at=utcnow())
    ok = session.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1
    session.commit()
    return ok


def finish_publish(session: Session, *, job_id: int, owner: str, ok: bool, message: str, url: str | None = None,
                   commit: str | None = None) -> bool:
    """End our publish; on success the Hub push is recorded as an artifact (path = the repo URL). The one-shot
    token is deleted either way. False when the publish is no longer ours."""
    status = PublishStatus.SUCCEEDED if ok else PublishStatus.FAILED
    stmt = update(Job).where(*_owned(job_id, owner)).values(
        publish_status=status.value, publish_message=message, publish_url=url if ok else None, publish_commit=commit if ok else None,
        publish_owner=None, publish_lease_expires_at=None, updated_at=utcnow())
    if session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        session.rollback()
        return False
    session.execute(delete(Secret).where(Secret.name == one_shot_name(job_id)))
    if ok and url:
        known = session.scalars(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == ArtifactKind.HUB_PUSH.value,
                                                       Artifact.path == url)).first()
        if known is None:
            session.add(Artifact(job_id=job_id, kind=ArtifactKind.HUB_PUSH.value, path=url, created_at=utcnow()))
    session.commit()
    return True


def publish_folder_of(session: Session, job: Job) -> str | None:
    """The folder to publish for the run's requested target (its latest adapter or merged model)."""
    kind = ArtifactKind.MERGED if job.publish_target == PublishTarget.MERGED.value else ArtifactKind.ADAPTER
    artifact = latest_artifact(session, job_id=job.id, kind=kind)
    return artifact.path if artifact else None


def reap_publishes(session: Session, *, settings: Settings | None = None) -> tuple[list[int], list[int]]:
    """For the worker's reaper: fail publishes whose worker died (in words, one-shot token deleted), ring again
    for those left queued past redeliver_after_seconds. Returns (failed, rung)."""
    settings = settings or get_settings()
    now = utcnow()
    vanished = (Job.publish_status == PublishStatus.RUNNING.value, Job.publish_lease_expires_at < now)
    failed = list(session.scalars(select(Job.id).where(*vanished)).all())
    if failed:
        session.execute(update(Job).where(Job.id.in_(failed), *vanished).values(
            publish_status=PublishStatus.FAILED.value, publish_message=WORKER_GONE, publish_owner=None, publish_lease_expires_at=None,
            updated_at=now))
        session.execute(delete(Secret).where(Secret.name.in_([one_shot_name(j) for j in failed])))
    waiting = (Job.publish_status == PublishStatus.QUEUED.value, Job.updated_at < now - timedelta(seconds=settings.redeliver_after_seconds))
    rung = list(session.scalars(select(Job.id).where(*waiting)).all())
    if rung:
        session.execute(update(Job).where(Job.id.in_(rung), *waiting).values(updated_at=now))
    session.commit()
    for job_id in rung:
        ring_publish(job_id, settings)
    return failed, rung
