"""The worker's publish task: thin, explicitly named, a job id in (never a token); the work is in worker.publishing."""

from __future__ import annotations

import logging

from app.db.session import session_scope
from app.services import publishing
from app.settings import get_settings
from worker.celery_app import app
from worker.publish_hub import install_log_scrubber
from worker.publishing import supervise_publish
from worker.supervisor import lease_owner

log = logging.getLogger(__name__)


@app.task(name=publishing.PUBLISH_TASK)
def publish(job_id: int) -> None:
    """Claim the requested publish of run `job_id` and run it; a duplicate delivery finds nothing queued and does nothing."""
    install_log_scrubber()
    settings = get_settings()
    owner = lease_owner()
    with session_scope(settings) as session:
        if not publishing.claim_publish(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds):
            log.info("run %s: no publish to do (not requested, or taken by another worker)", job_id)
            return
    supervise_publish(job_id, owner, settings=settings)
