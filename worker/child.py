"""The training child: `python -m worker.child JOB_ID OWNER ATTEMPT [--resume-from DIR]`.

The only studio process that imports torch (through the trainer). It runs one attempt of one job:
load the job's config from the DB, call the trainer with DB-bound hooks, and report how it ended
through its exit code and an outcome file (worker.outcome). Three guards keep a job from ever running
twice at once: it exits when its supervising worker dies, it stops when its lease is taken over
(the reporter checks the owner), and it takes an exclusive lock on the job folder before training.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.db.session import session_scope, sessionmaker_for
from app.jobspec import JobSpecError, parse_job_spec
from app.services import jobs
from app.settings import Settings, get_settings
from worker.outcome import (
    EXIT_BUSY,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_ORPHANED,
    attempt_file,
    write_outcome,
)
from worker.reporter import JobReporter

log = logging.getLogger("worker.child")

ORPHAN_CHECK_SECONDS = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """Exit at once if the supervising worker dies: its lease will expire and another attempt will start."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(EXIT_ORPHANED)
            time.sleep(ORPHAN_CHECK_SECONDS)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


@contextmanager
def job_folder_lock(job_dir: Path, timeout: float) -> Iterator[bool]:
    """Hold an exclusive lock on the job folder (yields False if an earlier run kept it past `timeout`)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    with (job_dir / ".lock").open("a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_trainer(target: str) -> Callable[..., dict[str, Any]]:
    """Resolve 'package.module:function' (STUDIO_TRAINER; tests point it at a fake trainer)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def run_attempt(*, settings: Settings, job_id: int, owner: str, attempt: int, resume_from: Path | None) -> int:
    """Train once and return the exit code; the outcome file holds the details."""
    job_dir = settings.jobs_dir / str(job_id)
    outcome = attempt_file(job_dir, attempt, "outcome.json")
    reporter = JobReporter(sessionmaker_for(settings), job_id=job_id, owner=owner)
    try:
        from worker.training.errors import TrainingError
        from worker.training.hooks import TrainingCancelled

        trainer = load_trainer(settings.trainer)
    except Exception as exc:
        write_outcome(outcome, {"message": f"The trainer {settings.trainer!r} could not be loaded: {type(exc).__name__}: {exc}",
                                "hint": "Check the installation (and STUDIO_TRAINER if you set it)."})
        traceback.print_exc()
        return EXIT_FAILED
    try:
        with session_scope(settings) as session:
            spec = parse_job_spec(jobs.get_job(session, job_id=job_id).config).to_dict()
        result = trainer(spec, job_dir / "train", reporter.hooks(), resume_from=resume_from)
    except TrainingCancelled:
        reporter.flush()
        return EXIT_LEASE_LOST if reporter.stop_reason == "lease_lost" else EXIT_CANCELLED
    except (TrainingError, JobSpecError) as exc:
        reporter.flush()
        write_outcome(outcome, {"message": str(exc), "hint": getattr(exc, "hint", None)})
        return EXIT_FAILED
    except Exception as exc:
        traceback.print_exc()
        reporter.on_log(f"internal error: {type(exc).__name__}: {exc}")
        reporter.flush()
        write_outcome(outcome, {"message": f"The trainer stopped with an internal error: {type(exc).__name__}: {exc}",
                                "hint": "This is a bug in the studio; the job's log has the traceback. Please report it."})
        return EXIT_FAILED
    reporter.flush()
    write_outcome(outcome, {"result": result})
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.child", description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("owner")
    parser.add_argument("attempt", type=int)
    parser.add_argument("--resume-from", type=Path)
    parser.add_argument("--parent-pid", type=int, help="the supervising worker; this process exits when it is gone")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_with_parent(args.parent_pid or os.getppid())
    with job_folder_lock(settings.jobs_dir / str(args.job_id), timeout=settings.lease_seconds) as locked:
        if not locked:
            return EXIT_BUSY
        return run_attempt(settings=settings, job_id=args.job_id, owner=args.owner, attempt=args.attempt, resume_from=args.resume_from)


if __name__ == "__main__":
    sys.exit(main())
