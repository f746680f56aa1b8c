"""Downloading what a run produced: a file as is, a folder (an adapter, a merged model) as a streamed zip.

GET .../artifacts/{id} says, before anyone downloads, the size and sha256 of exactly the bytes the
download sends (the zip is deterministic, so they hold for every download of the same folder).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.deps import SessionDep
from app.api.schemas import ArtifactPublic
from app.services import artifacts

router = APIRouter(prefix="/api/jobs", tags=["artifacts"])


class DownloadPublic(BaseModel):
    url: str
    filename: str
    zipped: bool
    size_bytes: int | None  # None: a folder too big to zip-hash on request; its files are listed with theirs
    sha256: str | None


class ArtifactDetail(ArtifactPublic):
    """An artifact; size_bytes and sha256 describe its content, download the bytes the download sends."""

    download: DownloadPublic | None


def _found(session: Any, job_id: int, artifact_id: int) -> Any:
    try:
        return artifacts.get_artifact(session, job_id=job_id, artifact_id=artifact_id)
    except artifacts.ArtifactNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("/{job_id}/artifacts/{artifact_id:int}", response_model=ArtifactDetail)  # :int: a stray path is a 404
def artifact_detail(session: SessionDep, job_id: int, artifact_id: int) -> Any:
    artifact = _found(session, job_id, artifact_id)
    detail = ArtifactPublic.model_validate(artifact).model_dump()
    try:
        download = artifacts.prepare_download(artifact, job_id=job_id)
    except artifacts.ArtifactNotFound:
        return ArtifactDetail(**detail, download=None)
    checksum = artifacts.download_checksum(artifact)
    return ArtifactDetail(**detail, download=DownloadPublic(
        url=f"/api/jobs/{job_id}/artifacts/{artifact_id}/download", filename=download.filename, zipped=download.zipped,
        size_bytes=checksum.size_bytes if checksum else None, sha256=checksum.sha256 if checksum else None))


@router.get("/{job_id}/artifacts/{artifact_id}/download", response_class=StreamingResponse)
def download_artifact(session: SessionDep, job_id: int, artifact_id: int) -> StreamingResponse:
    artifact = _found(session, job_id, artifact_id)
    try:
        download = artifacts.prepare_download(artifact, job_id=job_id)
    except artifacts.ArtifactNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    body = artifacts.iter_zip(download.path) if download.zipped else artifacts.iter_file(download.path)
    headers = {"Content-Disposition": f'attachment; filename="{download.filename}"'}
    if download.zipped:
        known = artifacts.zip_checksum(download.path, limit=0)  # only a stored one: never zip twice for a header
        if known is not None:
            headers["Content-Length"] = str(known.size_bytes)
            headers["X-Content-SHA256"] = known.sha256
    else:
        headers["Content-Length"] = str(download.path.stat().st_size)
    return StreamingResponse(body, media_type=download.media_type, headers=headers)
