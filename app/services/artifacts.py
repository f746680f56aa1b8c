"""Handing a run's artifacts to people: find one, and stream it (a folder as a zip built on the fly).

The zip is written straight into the response in chunks, so a multi-gigabyte merged model never sits
in memory or in a temporary file. Adapters are small tensors that barely compress, so entries of
already-compressed tensor formats are stored, and text files (configs, READMEs) deflated.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Artifact
from app.services.jobs import ArtifactKind

CHUNK = 1 << 20
_STORED_SUFFIXES = {".safetensors", ".bin", ".pt", ".gguf", ".zip"}


class ArtifactNotFound(LookupError):
    def __init__(self, job_id: int, artifact_id: int, why: str = "does not exist"):
        super().__init__(f"artifact {artifact_id} of run {job_id} {why}")


@dataclass(frozen=True)
class Download:
    """What to send: the path, the file name the browser saves, and whether it is zipped on the fly."""

    path: Path
    filename: str
    zipped: bool
    media_type: str


def get_artifact(session: Session, *, job_id: int, artifact_id: int) -> Artifact:
    artifact = session.scalar(select(Artifact).where(Artifact.id == artifact_id, Artifact.job_id == job_id))
    session.commit()
    if artifact is None:
        raise ArtifactNotFound(job_id, artifact_id)
    return artifact


def latest_artifact(session: Session, *, job_id: int, kind: ArtifactKind) -> Artifact | None:
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind.value).order_by(Artifact.id.desc()).limit(1))
    session.commit()
    return artifact


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "artifact"


def prepare_download(artifact: Artifact, *, job_id: int) -> Download:
    """Describe how to send an artifact; raises ArtifactNotFound when it has no file (a Hub push, a deleted folder)."""
    if artifact.kind == ArtifactKind.HUB_PUSH.value:
        raise ArtifactNotFound(job_id, artifact.id, f"is on the Hub at {artifact.path}, not a file to download")
    path = Path(artifact.path)
    base = f"run-{job_id}-{_slug(artifact.kind)}"
    if path.is_dir():
        return Download(path, f"{base}.zip", True, "application/zip")
    if path.is_file():
        return Download(path, f"{base}-{_slug(path.name)}", False, "application/octet-stream")
    raise ArtifactNotFound(job_id, artifact.id, f"is missing on disk ({path})")


class _Pipe:
    """A write-only file object zipfile writes into; the generator drains it between writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def iter_zip(folder: Path) -> Iterator[bytes]:
    """Zip `folder` (paths relative to it) chunk by chunk, never holding more than about one chunk."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", allowZip64=True) as archive:  # type: ignore[arg-type]
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            method = zipfile.ZIP_STORED if file.suffix in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo.from_file(file, file.relative_to(folder).as_posix())
            info.compress_type = method
            with file.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    if pipe.parts:
                        yield pipe.drain()
            if pipe.parts:
                yield pipe.drain()
    if pipe.parts:
        yield pipe.drain()


def iter_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk
