"""The worker's Celery tasks: thin, explicitly named, a job id in; the work is in supervisor and services."""

from __future__ import annotations

import logging
from dataclasses import asdict

from app.broker import REAP_TASK, TRAIN_TASK
from app.db.session import session_scope
from app.services import jobs, merges
from app.settings import get_settings
from worker import lifecycle
from worker.celery_app import app
from worker.merging import supervise_merge
from worker.supervisor import lease_owner, supervise

log = logging.getLogger(__name__)


@app.task(name=TRAIN_TASK)
def train(job_id: int) -> None:
    """Claim job `job_id` and run one attempt of it; a duplicate or stale delivery does nothing."""
    settings = get_settings()
    if lifecycle.stopping.is_set():  # shutting down: take nothing new; the job is sent again once we are gone
        lifecycle.hand_back(job_id, settings)
        return
    with session_scope(settings) as session:
        claim = jobs.claim_job(session, job_id=job_id, owner=lease_owner(), lease_seconds=settings.lease_seconds)
    if claim is None:
        log.info("job %s: nothing to do (taken by another worker, finished, cancelled or out of attempts)", job_id)
        return
    supervise(claim, settings=settings, stopping=lifecycle.stopping)


@app.task(name=merges.MERGE_TASK)
def merge(job_id: int) -> None:
    """Claim the requested merge of run `job_id` and run it; a duplicate delivery finds nothing queued and does nothing."""
    settings = get_settings()
    owner = lease_owner()
    with session_scope(settings) as session:
        if not merges.claim_merge(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds):
            log.info("run %s: no merge to do (not requested, or taken by another worker)", job_id)
            return
    supervise_merge(job_id, owner, settings=settings, stopping=lifecycle.stopping)


@app.task(name=REAP_TASK)
def reap() -> dict[str, list[int]]:
    """Requeue jobs whose worker vanished and resend lost messages (the worker also does this on a timer)."""
    report = lifecycle.reap_once(get_settings())
    return asdict(report) if report else {}
