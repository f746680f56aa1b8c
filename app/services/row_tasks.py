"""A background side task that lives in a few prefixed columns of a run's Job row (merge_*, publish_*).

Merging and publishing are steps after a run, not runs of their own, and share one lifecycle over their
own columns <prefix>_status / _message / _owner / _lease_expires_at: a worker claims the queued task with
one conditional UPDATE (queued -> running, with an owner token and a lease), only the lease owner writes
progress and the ending, and the reaper fails a task whose worker died (lease expired) and rings again for
one left queued. RowTask holds those mechanics once; each service keeps its own public functions, words
and extra columns.

The web process imports this module: no torch, no worker package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import broker
from app.db.base import utcnow
from app.db.models import Job
from app.settings import Settings

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


@dataclass(frozen=True)
class RowTask:
    """The lifecycle of one side task kept in `Job.<prefix>_*` columns; `status` is its enum
    (members QUEUED, RUNNING, SUCCEEDED, FAILED), `task` the worker task name it rings, `noun` how logs name it."""

    prefix: str
    status: type[Enum]
    task: str
    noun: str
    worker_gone: str

    def column(self, name: str) -> Any:
        """The Job column `<prefix>_<name>`."""
        return getattr(Job, f"{self.prefix}_{name}")

    def values(self, **values: Any) -> dict[str, Any]:
        """`values` with each key prefixed, for an UPDATE of this task's columns."""
        return {f"{self.prefix}_{k}": v for k, v in values.items()}

    def _s(self, member: str) -> str:
        return getattr(self.status, member).value

    def ring(self, job_id: int, settings: Settings) -> bool:
        """Ask a worker to run the task of run `job_id`; False (logged) when the broker is down (the request stays queued)."""
        try:
            broker.client(settings).send_task(self.task, args=[job_id], queue=settings.queue, retry=True, retry_policy=RETRY_POLICY)
        except Exception as exc:  # the request stays in the DB; asking again sends it again
            log.warning("%s of run %s is queued but the broker could not be reached (%s)", self.noun, job_id, exc)
            return False
        return True

    def worker_vanished(self, job: Job) -> bool:
        """Recorded as running but its worker stopped renewing its lease (it died): it may be asked again."""
        expires = getattr(job, f"{self.prefix}_lease_expires_at")
        return getattr(job, f"{self.prefix}_status") == self._s("RUNNING") and expires is not None and expires < utcnow()

    def idle(self, now: Any) -> Any:
        """The SQL condition 'no task running': never asked, ended, or its worker vanished."""
        status, expires = self.column("status"), self.column("lease_expires_at")
        return status.is_(None) | status.in_([self._s("SUCCEEDED"), self._s("FAILED")]) | (
            (status == self._s("RUNNING")) & (expires < now))

    def claim(self, session: Session, *, job_id: int, owner: str, lease_seconds: float, message: str) -> bool:
        """Take the queued task of run `job_id` (False: not ours: a duplicate delivery, taken, or not requested)."""
        now = utcnow()
        stmt = (
            update(Job)
            .where(Job.id == job_id, self.column("status") == self._s("QUEUED"))
            .values(self.values(status=self._s("RUNNING"), owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds),
                                message=message) | {"updated_at": now})
            .execution_options(synchronize_session=False)
        )
        won = session.execute(stmt).rowcount == 1
        session.commit()
        return won

    def owned(self, job_id: int, owner: str) -> tuple:
        """The WHERE clauses 'this run's task is running and `owner` holds it'."""
        return (Job.id == job_id, self.column("owner") == owner, self.column("status") == self._s("RUNNING"))

    def _update_owned(self, session: Session, job_id: int, owner: str, values: dict[str, Any]) -> bool:
        stmt = update(Job).where(*self.owned(job_id, owner)).values(values)
        return session.execute(stmt.execution_options(synchronize_session=False)).rowcount == 1

    def write(self, session: Session, *, job_id: int, owner: str, touch: bool = True, **values: Any) -> bool:
        """Set the task's columns (unprefixed names) while `owner` holds it, and commit; False when no longer ours."""
        row = self.values(**values) | ({"updated_at": utcnow()} if touch else {})
        ok = self._update_owned(session, job_id, owner, row)
        session.commit()
        return ok

    def renew(self, session: Session, *, job_id: int, owner: str, lease_seconds: float) -> bool:
        return self.write(session, job_id=job_id, owner=owner, touch=False, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))

    def end(self, session: Session, *, job_id: int, owner: str, ok: bool, message: str, **values: Any) -> bool:
        """Write the ending (and `values`) while `owner` holds the task, releasing it; NOT committed, so the caller
        adds what belongs with the ending in the same commit. False (rolled back) when the task is no longer ours."""
        status = self._s("SUCCEEDED") if ok else self._s("FAILED")
        row = self.values(status=status, message=message, **values, owner=None, lease_expires_at=None) | {"updated_at": utcnow()}
        if not self._update_owned(session, job_id, owner, row):
            session.rollback()
            return False
        return True

    def reap(self, session: Session, *, settings: Settings,
             on_failed: Callable[[Session, Sequence[int]], None] | None = None) -> tuple[list[int], list[int]]:
        """Fail the tasks whose worker died (lease expired) with `worker_gone`, and ring again for those left queued past
        redeliver_after_seconds (a lost message); `on_failed` adds to the same commit. Returns (failed, rung)."""
        now = utcnow()
        status, expires = self.column("status"), self.column("lease_expires_at")
        vanished = (status == self._s("RUNNING"), expires < now)
        failed = list(session.scalars(select(Job.id).where(*vanished)).all())
        if failed:
            session.execute(update(Job).where(Job.id.in_(failed), *vanished).values(
                self.values(status=self._s("FAILED"), message=self.worker_gone, owner=None, lease_expires_at=None) | {"updated_at": now}))
            if on_failed is not None:
                on_failed(session, failed)
        waiting = (status == self._s("QUEUED"), Job.updated_at < now - timedelta(seconds=settings.redeliver_after_seconds))
        rung = list(session.scalars(select(Job.id).where(*waiting)).all())
        if rung:
            session.execute(update(Job).where(Job.id.in_(rung), *waiting).values(updated_at=now))
        session.commit()
        for job_id in rung:
            self.ring(job_id, settings)
        return failed, rung
