"""The files inside a folder artifact (a merged model), each with its size and sha256, and one of them by name.

People check a multi-gigabyte download file by file, so each file's hash is listed. Hashing gigabytes
on every page view would be slow: the worker writes the list once, beside the folder
(`<folder>.files.json`), and it is computed here only when that list is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from app.services.files import describe_path


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the artifact's folder, with '/'
    size_bytes: int
    sha256: str


def manifest_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".files.json")


def describe_files(folder: Path) -> list[FileEntry]:
    """Hash every file of `folder` (sorted by path)."""
    entries = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        size, digest = describe_path(file)
        entries.append(FileEntry(file.relative_to(folder).as_posix(), size, digest))
    return entries


def write_manifest(folder: Path) -> list[FileEntry]:
    entries = describe_files(folder)
    manifest_path(folder).write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def list_files(folder: Path) -> list[FileEntry]:
    """The folder's files from its manifest when it is there and names the same files, else hashed now."""
    try:
        entries = [FileEntry(**row) for row in json.loads(manifest_path(folder).read_text())]
        present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        if sorted(e.path for e in entries) == present:
            return entries
    except (OSError, ValueError, TypeError):
        pass
    return describe_files(folder)


def resolve_file(folder: Path, relative: str) -> Path | None:
    """The file `relative` inside `folder`, or None (missing, or a path that leaves the folder)."""
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def describe_folder(folder: Path) -> tuple[int, str]:
    """(total bytes, sha256) as app.services.files.describe_path gives for a folder, from the manifest when present."""
    entries = list_files(folder)
    lines = "".join(f"{e.path} {e.sha256}\n" for e in entries)
    return sum(e.size_bytes for e in entries), hashlib.sha256(lines.encode()).hexdigest()
