"""Reading a job's metrics for live charts: poll with the last step you have, get only what is new."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Metric


def metrics_since(session: Session, *, job_id: int, after_step: int = -1, limit: int = 5000) -> list[Metric]:
    """Metric rows of `job_id` with step > after_step, oldest first (at most `limit`)."""
    stmt = select(Metric).where(Metric.job_id == job_id, Metric.step > after_step).order_by(Metric.step, Metric.id).limit(limit)
    return list(session.scalars(stmt))


def latest_metric(session: Session, *, job_id: int) -> Metric | None:
    """The newest row (for a one-line status)."""
    return session.scalar(select(Metric).where(Metric.job_id == job_id).order_by(Metric.step.desc(), Metric.id.desc()).limit(1))
