"""Downloading what a run produced: a file as is, a folder (an adapter, a merged model) as a streamed zip."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from app.api.deps import SessionDep
from app.services import artifacts

router = APIRouter(prefix="/api/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts/{artifact_id}/download", response_class=StreamingResponse)
def download_artifact(session: SessionDep, job_id: int, artifact_id: int) -> StreamingResponse:
    try:
        artifact = artifacts.get_artifact(session, job_id=job_id, artifact_id=artifact_id)
        download = artifacts.prepare_download(artifact, job_id=job_id)
    except artifacts.ArtifactNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    body = artifacts.iter_zip(download.path) if download.zipped else artifacts.iter_file(download.path)
    headers = {"Content-Disposition": f'attachment; filename="{download.filename}"'}
    if not download.zipped:
        headers["Content-Length"] = str(download.path.stat().st_size)
    return StreamingResponse(body, media_type=download.media_type, headers=headers)
