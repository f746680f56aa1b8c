"""Process-wide state of a worker: the shutdown flag its supervisors watch, and the reaper thread.

The reaper runs in its own thread rather than as a beat-scheduled task, because the worker's single
pool slot is busy for the whole of a training run; it runs once at start (recovering what a previous
worker left behind) and then every reap_interval_seconds. Several workers reaping is harmless.
"""

from __future__ import annotations

import atexit
import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from app import broker
from app.db.session import session_scope
from app.services import jobs, merges, publishing
from app.settings import Settings

log = logging.getLogger(__name__)

stopping = threading.Event()
_handed_back: set[int] = set()


def hand_back(job_id: int, settings: Settings) -> None:
    """Send job `job_id` to the broker again once this worker has exited.

    During a warm shutdown the worker may still take messages; ringing now would hand the job to
    this very worker, which would drop it. At exit its consumer is closed, so another worker (or the
    next start of this one) gets the job.
    """
    if not _handed_back:
        atexit.register(lambda: [broker.ring(j, settings) for j in sorted(_handed_back)])
    _handed_back.add(job_id)


def reap_once(settings: Settings, *, redeliver_all: bool = False) -> jobs.ReapReport | None:
    try:
        with session_scope(settings) as session:
            report = jobs.reap(session, settings=settings, redeliver_all=redeliver_all)
            merges_failed, merges_rung = merges.reap_merges(session, settings=settings)
            publishes_failed, publishes_rung = publishing.reap_publishes(session, settings=settings)
    except SQLAlchemyError as exc:
        log.warning("reaper: database unavailable (%s); will retry", exc)
        return None
    if merges_failed or merges_rung:
        log.info("reaper: merges failed (worker gone) %s, sent again %s", merges_failed, merges_rung)
    if publishes_failed or publishes_rung:
        log.info("reaper: publishes failed (worker gone) %s, sent again %s", publishes_failed, publishes_rung)
    if report.requeued or report.failed or report.cancelled or report.redelivered:
        log.info("reaper: requeued %s, failed %s, cancelled %s, sent again %s", report.requeued, report.failed, report.cancelled, report.redelivered)
    return report


def start_reaper(settings: Settings) -> threading.Thread:
    def loop() -> None:
        reap_once(settings, redeliver_all=True)
        while not stopping.wait(settings.reap_interval_seconds):
            reap_once(settings)

    thread = threading.Thread(target=loop, name="studio-reaper", daemon=True)
    thread.start()
    return thread
