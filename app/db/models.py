"""The studio's tables. The schema changes only through an Alembic revision (migrations/).

Job rows are the single source of truth for a run: its full config (JSON) plus the columns needed to
query, its lifecycle (status, attempt, lease) and what a person needs to follow it (progress, message,
log tail). The allowed status values and transitions live in app.services.jobs, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint for metric rows.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    base_model: Mapped[str] = mapped_column(String(500), index=True)
    method: Mapped[str] = mapped_column(String(50), index=True)

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    error_hint: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    last_checkpoint_path: Mapped[str | None] = mapped_column(Text)
    last_checkpoint_step: Mapped[int | None] = mapped_column(Integer)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    log_lines: Mapped[int] = mapped_column(Integer, default=0)

    # The merge of a succeeded run into its base model (app.services.merges): its own small lifecycle.
    merge_status: Mapped[str | None] = mapped_column(String(16))
    merge_message: Mapped[str | None] = mapped_column(Text)
    merge_done: Mapped[int | None] = mapped_column(Integer)
    merge_total: Mapped[int | None] = mapped_column(Integer)
    merge_owner: Mapped[str | None] = mapped_column(String(200))
    merge_lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Publishing the run to the Hugging Face Hub (app.services.publishing): the same small lifecycle.
    publish_status: Mapped[str | None] = mapped_column(String(16))
    publish_message: Mapped[str | None] = mapped_column(Text)
    publish_target: Mapped[str | None] = mapped_column(String(16))  # "adapter" or "merged"
    publish_repo_id: Mapped[str | None] = mapped_column(String(200))
    publish_private: Mapped[bool | None] = mapped_column(Boolean)
    publish_url: Mapped[str | None] = mapped_column(Text)
    publish_commit: Mapped[str | None] = mapped_column(String(64))
    publish_owner: Mapped[str | None] = mapped_column(String(200))
    publish_lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    artifacts: Mapped[list[Artifact]] = relationship(back_populates="job", order_by="Artifact.id", passive_deletes=True)


class Metric(Base):
    """One logged training step (or eval) of a job; rows past a resumed checkpoint are replaced."""

    __tablename__ = "metrics"
    __table_args__ = (Index(None, "job_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    padding_share: Mapped[float | None] = mapped_column(Float)  # of the step's token slots, 0..1
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dataset(Base):
    """A dataset stored once under the data directory (by content hash), checked when it came in."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16), default="upload", server_default="upload")  # upload | path | hub
    origin: Mapped[str | None] = mapped_column(Text)  # the uploaded file's name, the local path or the Hub id
    path: Mapped[str] = mapped_column(Text)  # the stored copy the trainer reads
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(32))  # normalised: chat | prompt_completion | text
    detected: Mapped[str | None] = mapped_column(String(32))  # the shape found: chat, sharegpt, instruction, ...
    mapping: Mapped[dict[str, str] | None] = mapped_column(JSON)  # target field -> column, when set by a person
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    """A file or folder a job produced (adapter, checkpoint, merged model, bundle) or a Hub push (path = URL)."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")


class Secret(Base):
    """An encrypted value (Fernet ciphertext; the key is outside the DB, see app/secrets.py), e.g. the saved Hub token."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
