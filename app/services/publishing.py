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

import os
import re
from collections.abc import Sequence
from enum import Enum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import secrets
from app.db.base import utcnow
from app.db.models import Artifact, Job, Secret
from app.services.artifacts import latest_artifact
from app.services.jobs import ArtifactKind, JobStateError, JobStatus, get_job
from app.services.merges import MergeStatus
from app.services.row_tasks import RowTask
from app.settings import Settings, get_settings

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


PUBLISH = RowTask(prefix="publish", status=PublishStatus, task=PUBLISH_TASK, noun="publish", worker_gone=WORKER_GONE)


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
    stmt = (
        update(Job)
        .where(Job.id == job_id, PUBLISH.idle(now) | (Job.publish_status == PublishStatus.QUEUED.value))
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
    return PUBLISH.ring(job_id, settings or get_settings())


def worker_vanished(job: Job) -> bool:
    return PUBLISH.worker_vanished(job)


def claim_publish(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Take the queued publish of run `job_id` (False: a duplicate delivery, taken, or not requested)."""
    return PUBLISH.claim(session, job_id=job_id, owner=owner, lease_seconds=lease_seconds, message="Publishing: preparing the files.")


def renew_publish_lease(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
    return PUBLISH.renew(session, job_id=job_id, owner=owner, lease_seconds=lease_seconds)


def record_publish_progress(session: Session, *, job_id: int, owner: str, message: str) -> bool:
    return PUBLISH.write(session, job_id=job_id, owner=owner, message=message)


def finish_publish(session: Session, *, job_id: int, owner: str, ok: bool, message: str, url: str | None = None,
                   commit: str | None = None) -> bool:
    """End our publish; on success the Hub push is recorded as an artifact (path = the repo URL). The one-shot
    token is deleted either way. False when the publish is no longer ours."""
    if not PUBLISH.end(session, job_id=job_id, owner=owner, ok=ok, message=message, url=url if ok else None,
                       commit=commit if ok else None):
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
    return PUBLISH.reap(session, settings=settings or get_settings(), on_failed=_forget_one_shot_tokens)


def _forget_one_shot_tokens(session: Session, job_ids: Sequence[int]) -> None:
    session.execute(delete(Secret).where(Secret.name.in_([one_shot_name(j) for j in job_ids])))
