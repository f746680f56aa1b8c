"""A running studio back end for integration tests: database, broker, worker process(es), environment.

Two shapes, both real: the embedded defaults (SQLite + filesystem broker) and production
(PostgreSQL + Redis). The fake trainer (tests.worker.fake_trainer) stands in for the real one unless a
test asks for the real trainer.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.db.session import session_scope
from app.services import jobs
from app.services.jobs import JobStatus
from app.settings import Settings, get_settings
from tests.support.databases import empty_tables, migrate
from tests.support.fixtures import FAST_TIMINGS
from tests.support.processes import RedisServer, StudioProcess, start_worker
from tests.support.waiting import wait_for

FAKE_TRAINER = "tests.worker.fake_trainer:run_training"


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    folder: Path
    redis: RedisServer | None = None
    workers: list[StudioProcess] = field(default_factory=list)

    def add_worker(self) -> StudioProcess:
        worker = start_worker(self.env, self.folder / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def submit(self, *, name: str = "", max_steps: int = 8, checkpoint_every: int = 4, **over: Any) -> int:
        spec = {"name": name, "base_model": "demo", "method": {"peft_type": "LORA", "r": 4},
                "training": {"max_steps": max_steps, "checkpoint_every": checkpoint_every}, **over}
        with session_scope(self.settings) as session:
            return jobs.create_job(session, spec=spec, settings=self.settings).id

    def job(self, job_id: int) -> Any:
        with session_scope(self.settings) as session:
            job = jobs.get_job(session, job_id=job_id)
            _ = job.artifacts  # load while the session is open
            return job

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 60) -> Any:
        def reached() -> Any:
            job = self.job(job_id)
            return job if job.status in statuses else None

        try:
            return wait_for(reached, timeout=timeout, what=f"job {job_id} to be {' or '.join(statuses)}", interval=0.05)
        except AssertionError as exc:
            job = self.job(job_id)
            logs = "\n".join(f"--- {w.log_path.name}\n{w.log()[-2500:]}" for w in self.workers)
            raise AssertionError(f"{exc}\njob: {job.status} {job.message!r}\nlog tail:\n{job.log_tail}\n{logs}") from None

    def wait_job(self, job_id: int, ready: Callable[[Any], bool], *, what: str, timeout: float = 60) -> Any:
        """Wait until `ready(job)` holds for the running job; fail at once, with its message, if it ends first."""

        def probe() -> Any:
            job = self.job(job_id)
            if ready(job):
                return job
            if JobStatus(job.status).terminal:
                raise AssertionError(f"job {job_id} ended {job.status} before {what}: {job.message}\n{job.log_tail[-2000:]}")
            return None

        return wait_for(probe, timeout=timeout, what=f"{what} (job {job_id})")

    def runs(self, job_id: int) -> list[dict[str, Any]]:
        """What the fake trainer recorded: one entry per run of the job (pid, start step)."""
        path = self.settings.jobs_dir / str(job_id) / "train" / "runs.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def overlapped(self, job_id: int) -> bool:
        return (self.settings.jobs_dir / str(job_id) / "train" / "OVERLAP").exists()


@contextmanager
def running_stack(request: pytest.FixtureRequest, folder: Path, shape: str, *, workers: int = 1,
                  trainer: str = FAKE_TRAINER, **extra_env: str) -> Iterator[Stack]:
    """Set up a stack of `shape` ("sqlite+filesystem" or "postgresql+redis"), point this process at it, start workers."""
    redis = None
    if shape == "sqlite+filesystem":
        database_url, broker_url = f"sqlite:///{folder / 'studio.db'}", "filesystem://"
        migrate(database_url)
    else:
        database_url = request.getfixturevalue("postgres_url")
        empty_tables(database_url)
        redis = RedisServer(folder)
        redis.start()
        broker_url = redis.url
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(folder / "data"),
        "STUDIO_DATABASE_URL": database_url,
        "STUDIO_BROKER_URL": broker_url,
        "STUDIO_TRAINER": trainer,
        "STUDIO_QUEUE": f"studio-test-{secrets.token_hex(3)}",
        **FAST_TIMINGS,
        **extra_env,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if key.startswith("STUDIO_"):
                mp.setenv(key, value)
        get_settings.cache_clear()
        stack = Stack(settings=get_settings(), env=env, folder=folder, redis=redis)
        try:
            for _ in range(workers):
                stack.add_worker()
            yield stack
        finally:
            for worker in stack.workers:
                worker.stop()
            if redis:
                redis.stop()
            get_settings.cache_clear()
