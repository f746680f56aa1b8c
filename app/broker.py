"""The broker as a doorbell: send "work on job N" by task name, with nothing but the job id.

The DB is the source of truth; a message only tells some worker to look at a job row. So a lost
message costs a delay, never a run: the worker's reaper rings again for a job left queued (see
app.services.jobs.reap), and each message expires when that redelivery is due, so stale copies
are dropped instead of piling up. Sending never raises: a broker outage leaves the job queued.
The web process imports this module, so it must stay free of torch and of the worker package.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery

from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

TRAIN_TASK = "studio.train"
REAP_TASK = "studio.reap"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Settings shared by the sending side (web, CLI) and the worker."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],  # never pickle: a message is readable code for whoever can write the broker
        "result_serializer": "json",
        "task_ignore_result": True,  # outcomes live on the job row, not in a result backend
        "task_default_queue": settings.queue,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "enable_utc": True,
    }
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_dir / "messages"
        folder.mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "control").mkdir(parents=True, exist_ok=True)
        config["broker_url"] = "filesystem://localhost//"  # the host is unused; naming it silences kombu's warning
        config["broker_transport_options"] = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(settings.broker_dir / "control"),
            "polling_interval": 0.5,
        }
    return config


@lru_cache(maxsize=4)
def client(settings: Settings) -> Celery:
    """A Celery app used only to send messages (no tasks are imported on this side)."""
    app = Celery("peft-studio-client", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def ring(job_id: int, settings: Settings | None = None) -> bool:
    """Ask a worker to look at job `job_id`; False (logged) when the broker could not be reached."""
    settings = settings or get_settings()
    try:
        client(settings).send_task(
            TRAIN_TASK,
            args=[job_id],
            queue=settings.queue,
            expires=settings.redeliver_after_seconds,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # a broker outage must not lose the job: it stays queued in the DB
        log.warning("job %s is queued but the broker at %s could not be reached (%s); it will be sent again", job_id, settings.broker_url, exc)
        return False
    return True
