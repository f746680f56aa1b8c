"""Which server paths a dataset may be read from (STUDIO_DATASET_ROOTS).

A studio others can reach must not read and preview any file its process can read. The rule:
- STUDIO_DATASET_ROOTS set: a path must lie under one of those folders once symlinks are followed
  (so a link inside a root pointing outside it is refused, and '..' cannot climb out);
- not set and the studio binds to a loopback host: any path, as a single-user studio on a laptop needs;
- not set and bound elsewhere: every server path is refused, naming the setting to set.
Uploads and Hub datasets are not server paths and are not affected; the stored copies under
<data_dir>/datasets are always readable (their content is already in the studio).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from app.settings import Settings

from .rows import DatasetError

SETTING = "STUDIO_DATASET_ROOTS"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_server_path(path: str | Path, settings: Settings) -> Path:
    """The path, symlinks followed, when this studio may read it; DatasetError naming the rule otherwise."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_relative_to((settings.data_dir / "datasets").resolve()):
        return resolved  # a stored dataset's own copy: its content is already in the studio
    roots = settings.dataset_roots
    if not roots:
        if is_loopback(settings.host):
            return resolved
        raise DatasetError(
            f"Reading datasets from paths on the server is turned off: this studio listens on {settings.host}, "
            f"so others could read any file it can, and {SETTING} is not set.",
            hint=f"Upload the file instead, or set {SETTING} to the folders datasets may be read from (e.g. /srv/datasets) and restart.",
        )
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    shown = f"{path}" if str(resolved) == str(path) else f"{path} (which is {resolved})"
    raise DatasetError(
        f"The path {shown} is outside the folders datasets may be read from ({', '.join(str(r) for r in roots)}).",
        hint=f"Move the file under one of those folders, upload it instead, or add its folder to {SETTING}.",
    )
