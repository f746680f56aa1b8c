"""Handing a run's artifacts to people: find one, and stream it (a folder as a zip built on the fly).

The zip is written straight into the response in chunks, so a multi-gigabyte merged model never sits
in memory or in a temporary file. Adapters are small tensors that barely compress, so entries of
already-compressed tensor formats are stored, and text files (configs, READMEs) deflated.

The zip is deterministic (entries sorted by path, a fixed timestamp and permissions), so the same folder
always gives the same bytes: its size and sha256 are computed once, stored beside the folder
(`<folder>.zip.json`, tied to the folder's file sizes and times so changed files are hashed again) and shown
before the download, and every download hashes to the shown value. Artifact.sha256 stays the folder's
content digest (app.services.files.describe_path), which does not depend on the archive format.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Artifact
from app.services.files import describe_path
from app.services.jobs import ArtifactKind

CHUNK = 1 << 20
_STORED_SUFFIXES = {".safetensors", ".bin", ".pt", ".gguf", ".zip"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no file's mtime leaks into the bytes
ZIP_MODE = 0o644 << 16
ZIP_HASH_LIMIT = 512 << 20  # hashing a bigger zip on a page view takes too long: such folders list per-file sha256s


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
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=ZIP_DATE)
            info.compress_type = method
            info.external_attr = ZIP_MODE
            info.create_system = 3  # unix, whatever system zips it
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


@dataclass(frozen=True)
class Checksum:
    """Size and sha256 of exactly the bytes a download sends."""

    size_bytes: int
    sha256: str


def zip_sidecar(folder: Path) -> Path:
    return folder.with_name(folder.name + ".zip.json")


def _fingerprint(folder: Path) -> tuple[int, str]:
    """(total bytes, a digest of every file's path, size and mtime): cheap enough for each page view, unlike hashing."""
    total, lines = 0, []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        total += stat.st_size
        lines.append(f"{file.relative_to(folder).as_posix()} {stat.st_size} {stat.st_mtime_ns}\n")
    return total, hashlib.sha256("".join(lines).encode()).hexdigest()


def zip_checksum(folder: Path, *, limit: int | None = None) -> Checksum | None:
    """The size and sha256 of `folder`'s zip: read from beside the folder, or zipped and hashed once and stored there.

    The stored value names the folder's files, sizes and modification times; when one changed it is computed again.
    None when it is not stored yet and the folder holds more than `limit` bytes (left to per-file checksums).
    """
    total, content = _fingerprint(folder)
    sidecar = zip_sidecar(folder)
    try:
        row = json.loads(sidecar.read_text())
        if row.get("fingerprint") == content:
            return Checksum(int(row["size_bytes"]), str(row["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if limit is not None and total > limit:
        return None
    digest, size = hashlib.sha256(), 0
    for chunk in iter_zip(folder):
        digest.update(chunk)
        size += len(chunk)
    checksum = Checksum(size, digest.hexdigest())
    try:  # a read-only data folder only costs hashing again next time
        tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": content, "size_bytes": size, "sha256": checksum.sha256}))
        os.replace(tmp, sidecar)
    except OSError:
        pass
    return checksum


def download_checksum(artifact: Artifact, *, limit: int | None = ZIP_HASH_LIMIT) -> Checksum | None:
    """What the download of `artifact` will hash to; None when there is nothing to download (a Hub push, a missing
    path) or it is a folder over `limit` bytes whose zip was never hashed (its files are listed one by one).

    A file is sent as is, so its recorded size and sha256 are the download's; a folder is sent as the zip above.
    """
    if artifact.kind == ArtifactKind.HUB_PUSH.value:
        return None
    path = Path(artifact.path)
    if path.is_dir():
        return zip_checksum(path, limit=limit)
    if path.is_file():
        if artifact.sha256 and artifact.size_bytes is not None:
            return Checksum(artifact.size_bytes, artifact.sha256)
        return Checksum(*describe_path(path))
    return None
