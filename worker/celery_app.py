"""The Celery app of the worker: `peft-studio worker` (or `celery -A worker.celery_app worker`).

Delivery model: early acknowledgement + a lease on the job row + a reaper (reliability.md §1.5, A).

Why not late acks (B): a training run lasts hours. With late acks the message stays unacknowledged
that long, and the Redis visibility timeout redelivers it to another worker while the first still
trains (celery#5935, #3430); raising the timeout above the longest run delays the recovery of truly
lost work by as much, and task_reject_on_worker_lost can loop a job that kills its worker. The
embedded filesystem broker has no visibility timeout at all, so B would behave differently per broker.
With A the message is only a doorbell: acknowledged on receipt, it carries just the job id. What
keeps a run alive is the DB: the worker claims the row with a conditional UPDATE (a duplicate
delivery gets nothing), renews a lease while its child trains, and the reaper requeues a job whose
lease expired (its worker died) to resume from its last checkpoint, up to max_attempts, and sends
again the message of a job left queued (a broker that lost its messages).

Other settings follow from long GPU tasks: JSON only; one task at a time (threads pool of 1, one
worker process per GPU) and prefetch 1 (or none, on Redis) so queued jobs are not held by a busy
worker; the threads pool keeps the worker's main loop responsive while a task supervises its
training child, and it never forks, so no CUDA or DB connection is shared across a fork.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from app.broker import celery_config
from app.settings import Settings, get_settings
from worker import lifecycle


def worker_config(settings: Settings) -> dict[str, Any]:
    config = celery_config(settings)
    config.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=settings.broker_url.startswith(("redis://", "rediss://")),
        worker_pool="threads",
        worker_concurrency=1,
        # Only late-ack tasks are affected, and ours survive a broker outage anyway (the DB holds the run).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        broker_connection_max_retries=None,  # keep trying: a training run outlives a broker restart
    )
    return config


app = Celery("peft-studio", include=["worker.tasks", "worker.publish_tasks", "worker.combine_tasks"])
app.add_defaults(lambda: worker_config(get_settings()))  # read lazily: importing this module reads no settings


@signals.worker_ready.connect
def _on_ready(**_: Any) -> None:
    lifecycle.start_reaper(get_settings())


@signals.worker_shutting_down.connect
def _on_shutting_down(**_: Any) -> None:
    lifecycle.stopping.set()
