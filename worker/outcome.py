"""How a training child tells its supervisor how it ended: an exit code plus a small JSON file.

The exit code alone decides the class of ending (a signal or an unknown code means the process died);
the file carries the details a person reads (the trainer's message, the result numbers).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 3  # the run cannot succeed as configured; the file says why (no retry)
EXIT_CANCELLED = 4  # stopped because a person cancelled it
EXIT_LEASE_LOST = 5  # stopped because another attempt owns the job now
EXIT_ORPHANED = 6  # its supervising worker died, so it stopped too
EXIT_BUSY = 7  # an earlier run of the same job still held the job folder


def attempt_file(job_dir: Path, attempt: int, suffix: str) -> Path:
    return job_dir / "attempts" / f"{attempt}.{suffix}"


def write_outcome(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so the supervisor never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def read_outcome(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe_exit(returncode: int) -> str:
    """The death of a training process in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGKILL:
            return f"The training process was killed ({name}; the system's out-of-memory killer sends this too)."
        return f"The training process was stopped by {name}."
    if returncode == EXIT_BUSY:
        return "An earlier run of this job was still running on this machine."
    return f"The training process exited unexpectedly (exit code {returncode})."
