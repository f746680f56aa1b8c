"""Jobs over HTTP: create, list, get, cancel, and new metric rows for polling charts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status

from app.api.deps import SessionDep, SettingsDep
from app.api.schemas import JobDetail, JobPublic, MetricPublic
from app.jobspec import JobSpecError
from app.services import jobs, metrics
from app.services.jobs import JobNotFound, JobStateError, JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _get(session: SessionDep, job_id: int) -> Any:
    try:
        return jobs.get_job(session, job_id=job_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobPublic)
def create_job(session: SessionDep, settings: SettingsDep, spec: Annotated[dict[str, Any], Body(description="a job spec (app.jobspec)")]) -> Any:
    try:
        return jobs.create_job(session, spec=spec, settings=settings)
    except JobSpecError as exc:
        raise HTTPException(422, detail={"message": "invalid job", "problems": exc.problems}) from exc


@router.get("", response_model=list[JobPublic])
def list_jobs(session: SessionDep, status_: Annotated[JobStatus | None, Query(alias="status")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Any:
    return jobs.list_jobs(session, status=status_, limit=limit)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(session: SessionDep, job_id: int) -> Any:
    return _get(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(session: SessionDep, job_id: int) -> Any:
    _get(session, job_id)
    try:
        return jobs.request_cancel(session, job_id=job_id)
    except JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.get("/{job_id}/metrics", response_model=list[MetricPublic])
def job_metrics(session: SessionDep, job_id: int, after_step: Annotated[int, Query(description="only rows with a larger step")] = -1) -> Any:
    _get(session, job_id)
    return metrics.metrics_since(session, job_id=job_id, after_step=after_step)
