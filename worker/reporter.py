"""Binds a training run's hooks to its job row, cheaply.

The trainer calls the hooks every step; the database sees at most one small batch per second
(metrics, log lines and progress together) and one cancel/lease check per half second. Every write is
fenced by the run's lease owner, so a run that lost its job stops writing and stops training.
A database hiccup never kills a run: the batch stays buffered and is retried at the next flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job
from app.services import jobs

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
STOP_POLL_SECONDS = 0.5
MAX_BUFFERED_ROWS = 10_000


class JobReporter:
    """The DB side of TrainHooks for one attempt of one job."""

    def __init__(self, sessions: sessionmaker[Session], *, job_id: int, owner: str, clock: Callable[[], float] = time.monotonic):
        self.sessions = sessions
        self.job_id = job_id
        self.owner = owner
        self.clock = clock
        self.stop_reason: str | None = None  # "cancelled" or "lease_lost" once should_stop said True
        self._metrics: list[dict[str, Any]] = []
        self._lines: list[str] = []
        self._progress: tuple[int, int | None] | None = None
        self._last_flush = clock()
        self._last_poll = float("-inf")

    # --- the hooks ---------------------------------------------------------------------------

    def on_metrics(self, rows: list[dict[str, Any]]) -> None:
        self._metrics.extend(dict(row) for row in rows)
        del self._metrics[:-MAX_BUFFERED_ROWS]
        self._maybe_flush()

    def on_log(self, line: str) -> None:
        print(line, flush=True)  # the attempt's log file keeps every line; the DB keeps a tail
        self._lines.append(line)
        del self._lines[:-MAX_BUFFERED_ROWS]
        self._maybe_flush()

    def on_progress(self, step: int, total: int) -> None:
        self._progress = (step, total)
        self._maybe_flush()

    def on_checkpoint(self, folder: str, step: int) -> None:
        """Flush first, so every metric up to the checkpoint is stored before a resume could start from it."""
        self.flush()
        try:
            with self.sessions() as session:
                if not jobs.record_checkpoint(session, job_id=self.job_id, owner=self.owner, path=str(folder), step=step):
                    self.stop_reason = "lease_lost"
        except SQLAlchemyError as exc:
            log.warning("job %s: could not record checkpoint %s (%s); an earlier one stays the resume point", self.job_id, folder, exc)

    def should_stop(self) -> bool:
        if self.stop_reason is None and self.clock() - self._last_poll >= STOP_POLL_SECONDS:
            self._last_poll = self.clock()
            self._poll()
            self._maybe_flush()
        return self.stop_reason is not None

    def hooks(self) -> Any:
        """A worker.training.hooks.TrainHooks bound to this reporter."""
        from worker.training.hooks import TrainHooks

        return TrainHooks(
            on_metrics=self.on_metrics,
            on_checkpoint=self.on_checkpoint,
            on_log=self.on_log,
            on_progress=self.on_progress,
            should_stop=self.should_stop,
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            with self.sessions() as session:
                row = session.execute(select(Job.cancel_requested, Job.lease_owner).where(Job.id == self.job_id)).one_or_none()
        except SQLAlchemyError as exc:
            log.warning("job %s: could not check for a cancel request (%s); will retry", self.job_id, exc)
            return
        if row is None or row.lease_owner != self.owner:
            self.stop_reason = "lease_lost"
        elif row.cancel_requested:
            self.stop_reason = "cancelled"

    def _maybe_flush(self) -> None:
        if self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics, log lines and progress now (also called at the end of the run)."""
        self._last_flush = self.clock()
        if not (self._metrics or self._lines or self._progress):
            return
        owned = True
        try:
            with self.sessions() as session:
                if self._metrics:
                    owned = jobs.record_metrics(session, job_id=self.job_id, rows=self._metrics, owner=self.owner) > 0
                    self._metrics = []
                if owned and self._lines:
                    owned = jobs.append_log(session, job_id=self.job_id, lines=self._lines, owner=self.owner)
                    self._lines = []
                if owned and self._progress:
                    step, total = self._progress
                    owned = jobs.record_progress(session, job_id=self.job_id, owner=self.owner, step=step, total=total)
                    self._progress = None
        except SQLAlchemyError as exc:
            log.warning("job %s: could not write metrics or logs (%s); keeping them for the next try", self.job_id, exc)
            return
        if not owned:
            self.stop_reason = "lease_lost"
