"""Size and content hash of an artifact on disk (a file or a whole folder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_path(path: Path) -> tuple[int, str]:
    """(total bytes, sha256). A folder hashes its sorted 'relative/path sha256' lines, so renaming a file changes it."""
    if path.is_file():
        return path.stat().st_size, _file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"artifact {path} does not exist")
    size, lines = 0, []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size += file.stat().st_size
        lines.append(f"{file.relative_to(path).as_posix()} {_file_sha256(file)}\n")
    return size, hashlib.sha256("".join(lines).encode()).hexdigest()
