"""What kind of file a dataset is, decided from its first bytes as well as its name, before anything parses it.

Archives are refused by content (a .jsonl that is really a zip is still a zip): the studio stores and
reads one plain table per dataset, and unpacking archives from strangers is a risk for no gain.
"""

from __future__ import annotations

from pathlib import Path

from .rows import DatasetError

TABLE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
ARCHIVE_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstandard archive"),
)
PARQUET_MAGIC = b"PAR1"
SUPPORTED = "CSV, JSON, JSONL or Parquet"


def _archive(head: bytes) -> str | None:
    for magic, what in ARCHIVE_MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "a tar archive"
    return None


def file_kind(path: Path, name: str, max_bytes: int | None = None) -> str:
    """'jsonl', 'json', 'csv' or 'parquet' for a file people brought; DatasetError says why it cannot be used."""
    if not path.is_file():
        raise DatasetError(f"The dataset file {name} does not exist.", hint="Upload the file again or fix its path.")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DatasetError(
            f"The dataset file {name} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB.",
            hint="Use a smaller file, or raise STUDIO_MAX_UPLOAD_BYTES.",
        )
    if size == 0:
        raise DatasetError(f"The dataset file {name} is empty (0 bytes).", hint=f"Upload a {SUPPORTED} file with one example per row.")
    with path.open("rb") as fh:
        head = fh.read(512)
    archive = _archive(head)
    if archive:
        raise DatasetError(
            f"The dataset file {name} is {archive}, not a table.",
            hint=f"Unpack it and upload the {SUPPORTED} file inside instead.",
        )
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    kind = TABLE_KINDS.get(Path(name).suffix.lower()) or TABLE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"The dataset file {name} has an extension the studio does not read ({Path(name).suffix or 'none'}).",
            hint=f"Use a {SUPPORTED} file (.csv, .json, .jsonl or .parquet).",
        )
    if kind == "parquet":
        raise DatasetError(f"The dataset file {name} is named .parquet but is not a Parquet file.", hint="Export it again as Parquet.")
    return kind
