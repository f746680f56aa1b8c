"""Run one claimed publish: gather the run's facts, write the card and chart, push, record the ending in words.

No torch is needed, so it runs in the worker's task thread (no child process); a small thread renews
the publish lease meanwhile. The token is decrypted here, just before the Hub call, and goes nowhere
but the client: not to the DB, the log, the message or the broker.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from app.db.session import session_scope
from app.secrets import SecretError
from app.services import metrics, publishing
from app.services.jobs import get_job
from app.settings import Settings
from worker.publish_card import CHART_FILE, CardFacts, loss_chart, model_card
from worker.publish_hub import PublishError, publish_folder

log = logging.getLogger(__name__)

NO_TOKEN = ("No Hub token: enter one in the publish panel (create a token with write access at https://huggingface.co/settings/tokens), "
            "or set HF_TOKEN on the worker, and publish again. Nothing was published.")


def dataset_text(config: dict[str, Any]) -> str:
    """The dataset as a card states it: never a local absolute path."""
    spec = config.get("dataset") or {}
    source = spec.get("source", "demo")
    if source == "demo":
        return "the studio's built-in demo dataset"
    where = spec.get("path") or spec.get("name") or spec.get("repo_id") or ""
    return f"{Path(str(where)).name or where} ({source})" if source != "hub" else f"{where} (Hugging Face Hub)"


def card_facts(session: Any, job: Any, repo_id: str) -> CardFacts:
    rows = metrics.metrics_since(session, job_id=job.id, after_step=-1, limit=100_000)
    train = [(m.step, m.loss) for m in rows if m.loss is not None]
    evals = [(m.step, m.eval_loss) for m in rows if m.eval_loss is not None]
    return CardFacts(repo_id=repo_id, run_name=job.name, base_model=job.base_model, method=dict(job.config.get("method") or {}),
                     dataset=dataset_text(job.config), steps=job.progress_step, target=job.publish_target or "adapter",
                     train_losses=train, eval_losses=evals, combination=job.config.get("combine"))


def supervise_publish(job_id: int, owner: str, *, settings: Settings) -> None:
    """Publish run `job_id` (claimed by `owner`) and write how it ended on the run's row."""
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(job_id, owner, settings, stop), name=f"publish-lease-{job_id}", daemon=True)
    renewer.start()
    try:
        ok, message, url, commit = _run(job_id, owner, settings)
    except Exception as exc:  # a bug, not a Hub answer: still end in words, never leave it running
        log.exception("publish of run %s: unexpected failure", job_id)
        ok, message, url, commit = False, f"Publishing failed unexpectedly ({type(exc).__name__}); see the worker log.", None, None
    finally:
        stop.set()
        renewer.join(5)
    with session_scope(settings) as session:
        if not publishing.finish_publish(session, job_id=job_id, owner=owner, ok=ok, message=message, url=url, commit=commit):
            log.warning("publish of run %s: could not record its ending: the publish is no longer ours", job_id)


def _run(job_id: int, owner: str, settings: Settings) -> tuple[bool, str, str | None, str | None]:
    with session_scope(settings) as session:
        job = get_job(session, job_id=job_id)
        repo_id, private, target = job.publish_repo_id or "", bool(job.publish_private), job.publish_target
        folder = publishing.publish_folder_of(session, job)
        try:
            token = publishing.resolve_token(session, job_id=job_id, settings=settings)
        except SecretError as exc:
            return False, f"{exc}. Nothing was published.", None, None
        if not token:
            return False, NO_TOKEN, None, None
        if folder is None or not Path(folder).is_dir():
            return False, f"The {target} files of run {job_id} are gone from {folder or 'the data folder'}; nothing was published.", None, None
        facts = card_facts(session, job, repo_id)
        publishing.record_publish_progress(session, job_id=job_id, owner=owner, message=f"Publishing: uploading the {target} to {repo_id}.")
    extra = {"README.md": model_card(facts).encode()}
    if facts.combination is None:  # a combined adapter was never trained: no loss to chart
        extra[CHART_FILE] = loss_chart(facts.train_losses, facts.eval_losses)
    try:
        done = publish_folder(endpoint=settings.hub_endpoint, token=token, repo_id=repo_id, private=private, folder=Path(folder), extra=extra,
                              message=f"Publish {target} of PEFT Studio run {job_id} ({facts.run_name})")
    except PublishError as exc:
        return False, str(exc), None, None
    what = f"{len(done.files)} files in one commit" if done.committed else "the Hub already had these exact files; no new commit"
    return True, f"Published to {done.url} ({what}).", done.url, done.commit


def _renew(job_id: int, owner: str, settings: Settings, stop: threading.Event) -> None:
    while not stop.wait(settings.lease_seconds / 3):
        try:
            with session_scope(settings) as session:
                if not publishing.renew_publish_lease(session, job_id=job_id, owner=owner, lease_seconds=settings.lease_seconds):
                    log.warning("publish of run %s: lease lost; its ending will not be recorded by this worker", job_id)
                    return
        except SQLAlchemyError as exc:  # the lease has slack for a short outage
            log.warning("publish of run %s: database unavailable (%s); retrying", job_id, exc)
