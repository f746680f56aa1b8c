"""What the API shows of the tables (the lease token and the full log stay private)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ArtifactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    path: str
    size_bytes: int | None
    sha256: str | None
    created_at: datetime


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    message: str
    error_hint: str | None
    base_model: str
    method: str
    config: dict[str, Any]
    attempt: int
    max_attempts: int
    cancel_requested: bool
    progress_step: int
    progress_total: int | None
    last_checkpoint_step: int | None
    result: dict[str, Any] | None
    merge_status: str | None = None
    merge_message: str | None = None
    merge_done: int | None = None
    merge_total: int | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobDetail(JobPublic):
    log_tail: str
    artifacts: list[ArtifactPublic]


class MetricPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    epoch: float | None
    loss: float | None
    lr: float | None
    grad_norm: float | None
    tokens_per_s: float | None
    padding_share: float | None = None
    eval_loss: float | None
