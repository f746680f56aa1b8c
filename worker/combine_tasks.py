"""The combine task and its reaper: thin, explicitly named, a job id in; the work is in worker.combining.

The reaper thread starts with the worker (worker_ready, like the jobs' reaper in worker.lifecycle): it
fails combinations whose worker died and rings again for those left queued (a lost message).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals
from sqlalchemy.exc import SQLAlchemyError

from app.db.session import session_scope
from app.services import combining
from app.settings import Settings, get_settings
from worker import lifecycle
from worker.celery_app import app
from worker.combining import supervise_combine
from worker.supervisor import lease_owner

log = logging.getLogger(__name__)


@app.task(name=combining.COMBINE_TASK)
def combine(job_id: int) -> None:
    """Claim queued combination `job_id` and make it; a duplicate delivery finds nothing queued and does nothing."""
    settings = get_settings()
    if lifecycle.stopping.is_set():  # shutting down: leave it queued; the reaper of the next worker rings again
        return
    owner = lease_owner()
    with session_scope(settings) as session:
        config = combining.claim_combine(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds)
    if config is None:
        log.info("combination %s: nothing to do (not queued: taken by another worker, finished or cancelled)", job_id)
        return
    supervise_combine(job_id, owner, config, settings=settings, stopping=lifecycle.stopping)


def reap_once(settings: Settings, rung: dict[int, float]) -> None:
    try:
        with session_scope(settings) as session:
            failed, sent = combining.reap_combines(session, settings=settings, rung=rung, now_s=time.monotonic())
    except SQLAlchemyError as exc:
        log.warning("combine reaper: database unavailable (%s); will retry", exc)
        return
    if failed or sent:
        log.info("combine reaper: failed (worker gone) %s, sent again %s", failed, sent)


def start_reaper(settings: Settings) -> threading.Thread:
    rung: dict[int, float] = {}

    def loop() -> None:
        reap_once(settings, rung)
        while not lifecycle.stopping.wait(settings.reap_interval_seconds):
            reap_once(settings, rung)

    thread = threading.Thread(target=loop, name="studio-combine-reaper", daemon=True)
    thread.start()
    return thread


@signals.worker_ready.connect
def _on_ready(**_: Any) -> None:
    start_reaper(get_settings())
