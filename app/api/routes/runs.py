"""Run housekeeping over HTTP: a run's summary (last loss, ETA) and deleting a finished run with its files."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from app.api.deps import SessionDep, SettingsDep
from app.services import runs
from app.services.jobs import JobNotFound, JobStateError

router = APIRouter(prefix="/api/jobs", tags=["runs"])


@router.get("/{job_id}/summary")
def run_summary(session: SessionDep, job_id: int) -> dict[str, Any]:
    """Status, progress, last train/eval loss, duration and ETA (seconds) of one run."""
    try:
        summary, _ = runs.get_run(session, job_id=job_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return {**asdict(summary), "duration_seconds": summary.duration_seconds, "eta_seconds": summary.eta_seconds, "fraction": summary.fraction}


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_run(session: SessionDep, settings: SettingsDep, job_id: int) -> Response:
    """Delete a finished run (a queued or running one must be cancelled first: 409)."""
    try:
        runs.delete_run(session, job_id=job_id, settings=settings)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
