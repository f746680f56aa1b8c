"""Finding checkpoint files in a local folder or a Hub repo, with errors that name what is missing."""

from __future__ import annotations

import os
from typing import Any

from .errors import CheckpointError


def resolve_file(
    path_or_repo: str | os.PathLike,
    filename: str,
    subfolder: str | None = None,
    *,
    required: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | None = None,
    **_: Any,
) -> str | None:
    """Local path of `filename` from a folder or a Hub repo id; None if absent and not required."""
    path = os.fspath(path_or_repo)
    local_dir = os.path.join(path, subfolder) if subfolder else path
    if os.path.isdir(path):
        candidate = os.path.join(local_dir, filename)
        if os.path.isfile(candidate):
            return candidate
        if required:
            present = sorted(os.listdir(local_dir)) if os.path.isdir(local_dir) else []
            raise CheckpointError(f"{filename} not found in {local_dir} (it contains: {present or 'nothing'})")
        return None
    if path.startswith((".", "/", "~")) or os.sep in path and path.count("/") > 1:
        raise CheckpointError(f"{path} is not a folder on this machine, nor a Hub repo id like 'owner/name'")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"{path} is not a local folder and huggingface_hub is not installed") from exc
    try:
        return hf_hub_download(path, filename, subfolder=subfolder, revision=revision, token=token, cache_dir=cache_dir)
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"{filename} not found in Hub repo {path!r}") from None
        return None
    except RepositoryNotFoundError:
        raise CheckpointError(f"Hub repo {path!r} not found, or it is private/gated and no valid token was given") from None
    except LocalEntryNotFoundError:
        if not required:
            return None
        raise CheckpointError(
            f"cannot fetch {filename} of Hub repo {path!r}: the Hub is not reachable (offline?) and the file is "
            "not in the local cache. Download it where there is network, or pass a local folder."
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(f"cannot fetch {filename} of Hub repo {path!r}: {exc}") from None
