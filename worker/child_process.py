"""What the one-shot torch children (merge, combine) share: their main, their outcome ladder, and the parent's
start-and-watch loop.

A child (`python -m worker.<name>_child JOB_ID OWNER --parent-pid PID`) exits with its supervising worker,
holds an exclusive lock on its own folder, and reports how it ended through its exit code and an
outcome.json there (worker.outcome). The supervisor starts it with its output in a log file, polls it,
runs its periodic checks (lease renewal, cancel) and stops it when one says so or the worker shuts down.
Each child keeps its own words (its failure class, its out-of-memory advice) and passes them in.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db.session import session_scope
from app.settings import Settings, get_settings
from worker.child import exit_with_parent, job_folder_lock
from worker.outcome import EXIT_BUSY, EXIT_FAILED, EXIT_LEASE_LOST, EXIT_OK, write_outcome

log = logging.getLogger(__name__)

OUTCOME_FILE = "outcome.json"

# --- child side -------------------------------------------------------------------------------------


def run_to_outcome(outcome: Path, work: Callable[[], dict[str, Any]], *, failed: type[Exception], out_of_memory: str, what: str,
                   log_name: str, lease_lost: tuple[type[Exception], ...] = ()) -> int:
    """Run `work` and turn how it ended into an exit code plus `outcome` (its result, or a message in words).

    `failed` is the child's own "cannot succeed as asked" exception (its message is shown as is); `what`
    starts the internal-error message ("The merge", "Combining") and `log_name` names the log holding the traceback.
    """
    try:
        write_outcome(outcome, {"result": work()})
        return EXIT_OK
    except lease_lost:
        return EXIT_LEASE_LOST
    except failed as exc:
        write_outcome(outcome, {"message": str(exc)})
        return EXIT_FAILED
    except MemoryError:
        write_outcome(outcome, {"message": out_of_memory})
        return EXIT_FAILED
    except Exception as exc:
        traceback.print_exc()
        write_outcome(outcome, {"message": f"{what} stopped with an internal error: {type(exc).__name__}: {exc}. The {log_name} has the traceback."})
        return EXIT_FAILED


def child_main(argv: list[str] | None, *, prog: str, description: str | None, folder: Callable[[Settings, int], Path],
               run: Callable[[Settings, int, str], int]) -> int:
    """Parse JOB_ID OWNER --parent-pid, set up logging, exit with the parent, lock `folder` and call `run`;
    EXIT_BUSY when an earlier child of the same job still holds the folder."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("job_id", type=int)
    parser.add_argument("owner")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_with_parent(args.parent_pid or os.getppid())
    with job_folder_lock(folder(settings, args.job_id), timeout=settings.lease_seconds) as locked:
        if not locked:
            return EXIT_BUSY
        return run(settings, args.job_id, args.owner)


# --- supervisor side --------------------------------------------------------------------------------


def start_child(module: str, job_id: int, owner: str, folder: Path, log_name: str) -> subprocess.Popen[bytes]:
    """Start `python -m module JOB_ID OWNER --parent-pid <us>` in its own session, output appended to folder/log_name.

    An earlier child's outcome file is removed first, so it is never read as this one's. Raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTCOME_FILE).unlink(missing_ok=True)
    with (folder / log_name).open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module, str(job_id), owner, "--parent-pid", str(os.getpid())],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


@dataclass(frozen=True)
class Check:
    """A periodic check while the child runs: `probe` returns an ending that stops the child (None: carry on)."""

    every: float
    probe: Callable[[], str | None]


def lease_check(settings: Settings, renew: Callable[[Session], bool], *, lost: str, logger: logging.Logger = log) -> Check:
    """Renew the lease every third of its length with `renew`; when it says False another worker holds the task now:
    the ending "lease lost", logged as `lost`."""

    def probe() -> str | None:
        with session_scope(settings) as session:
            if renew(session):
                return None
        logger.warning("%s", lost)
        return "lease lost"

    return Check(settings.lease_seconds / 3, probe)


def watch(proc: subprocess.Popen[bytes], stopping: threading.Event, checks: Sequence[Check], *, label: str,
          logger: logging.Logger = log) -> str:
    """Wait for the child: "exited", "shutdown" (worker stopping), or the ending a check returned (the child then stopped).

    A database error in a check is logged and the remaining checks wait for the next turn: the lease has slack for a
    short outage."""
    from worker.supervisor import POLL_SECONDS, _stop  # here, not above: the children import this module and need no broker

    due = [time.monotonic() + check.every for check in checks]
    while True:
        try:
            proc.wait(timeout=POLL_SECONDS)
            return "exited"
        except subprocess.TimeoutExpired:
            pass
        if stopping.is_set():
            _stop(proc)
            return "shutdown"
        now = time.monotonic()
        for i, check in enumerate(checks):
            if now < due[i]:
                continue
            due[i] = now + check.every
            try:
                ending = check.probe()
            except SQLAlchemyError as exc:
                logger.warning("%s: database unavailable (%s); retrying", label, exc)
                break
            if ending is not None:
                _stop(proc)
                return ending
