"""Merging a run into its base model over HTTP, and the files of a folder artifact with sizes and sha256.

The merge itself runs in the worker; POST only records the request (202) and the run's merge_* fields
(GET /api/jobs/{id}) follow it. A merged model is downloaded whole as a streamed zip (artifacts router)
or file by file from here, each file checkable against its listed sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.deps import SessionDep, SettingsDep
from app.api.schemas import ArtifactPublic
from app.db.models import Artifact
from app.services import artifacts, jobs, merges
from app.services.artifact_files import list_files, resolve_file
from app.services.jobs import JobNotFound, JobStateError

router = APIRouter(prefix="/api/jobs", tags=["merge"])


class MergeState(BaseModel):
    job_id: int
    merge_status: str | None
    merge_message: str | None
    merge_done: int | None
    merge_total: int | None


class FilePublic(BaseModel):
    path: str
    size_bytes: int
    sha256: str
    url: str


class ArtifactWithFiles(ArtifactPublic):
    download_url: str
    files: list[FilePublic]


def _state(job: Any) -> MergeState:
    return MergeState(job_id=job.id, merge_status=job.merge_status, merge_message=job.merge_message, merge_done=job.merge_done,
                      merge_total=job.merge_total)


@router.post("/{job_id}/merge", status_code=status.HTTP_202_ACCEPTED, response_model=MergeState)
def request_merge(session: SessionDep, settings: SettingsDep, job_id: int) -> Any:
    try:
        return _state(merges.request_merge(session, job_id=job_id, settings=settings))
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.get("/{job_id}/merge", response_model=MergeState)
def merge_state(session: SessionDep, job_id: int) -> Any:
    try:
        return _state(jobs.get_job(session, job_id=job_id))
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


def _with_files(job_id: int, artifact: Artifact) -> ArtifactWithFiles:
    base = f"/api/jobs/{job_id}/artifacts/{artifact.id}"
    folder = Path(artifact.path)
    files = [FilePublic(path=e.path, size_bytes=e.size_bytes, sha256=e.sha256, url=f"{base}/files/{e.path}")
             for e in (list_files(folder) if folder.is_dir() else [])]
    return ArtifactWithFiles(**ArtifactPublic.model_validate(artifact).model_dump(), download_url=f"{base}/download", files=files)


@router.get("/{job_id}/artifacts", response_model=list[ArtifactWithFiles])
def list_artifacts(session: SessionDep, job_id: int) -> Any:
    """Every artifact of the run; folders list their files with size and sha256."""
    try:
        job = jobs.get_job(session, job_id=job_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return [_with_files(job_id, a) for a in job.artifacts]


@router.get("/{job_id}/artifacts/{artifact_id}/files/{relative:path}", response_class=StreamingResponse)
def download_file(session: SessionDep, job_id: int, artifact_id: int, relative: str) -> StreamingResponse:
    """One file of a folder artifact, streamed (a safetensors shard of a merged model)."""
    try:
        artifact = artifacts.get_artifact(session, job_id=job_id, artifact_id=artifact_id)
    except artifacts.ArtifactNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    folder = Path(artifact.path)
    file = resolve_file(folder, relative) if folder.is_dir() else None
    if file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"artifact {artifact_id} of run {job_id} has no file {relative}")
    headers = {"Content-Disposition": f'attachment; filename="{file.name}"', "Content-Length": str(file.stat().st_size)}
    return StreamingResponse(artifacts.iter_file(file), media_type="application/octet-stream", headers=headers)
