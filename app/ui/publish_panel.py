"""The publish part of the run page: push a succeeded run's adapter (or merged model) to the Hugging Face Hub.

Self-contained so run_detail only places it: the panel reads the run id from the page URL, polls the
run's publish_* columns with its own gr.Timer while something is under way, and calls
app.services.publishing like the API and CLI do. The token field is a password box that is emptied
after every click and never filled from the server; when a token is saved it only says so.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import gradio as gr

from app.db.models import Job
from app.db.session import session_scope
from app.services import jobs, publishing
from app.services.jobs import JobStateError
from app.settings import Settings
from app.ui import fragments

POLL_SECONDS = 1.0
TITLE = "Publish to the Hugging Face Hub"
INTRO = ("One commit to a model repo: the files and a model card (base model, method and settings, how it was made: the dataset, "
         "steps, losses and loss chart of a trained run, or the runs and weights of a combination; how to load it). "
         "Publishing again uploads only what changed.")
TARGET_LABEL = "What to publish"
TARGETS = {"adapter": "Adapter (small; loads on the base model)", "merged": "Merged model (needs a finished merge)"}
REPO_LABEL = "Repo"
REPO_INFO = "'name' (under your account) or 'owner/name'; created if it does not exist"
PRIVATE_LABEL = "Private repo"
TOKEN_LABEL = "Hub token"
TOKEN_INFO = "A token with write access from huggingface.co/settings/tokens. Stored encrypted, never shown again."
TOKEN_SAVED = "A token is saved (encrypted). Leave empty to use it, or paste another to replace it."
TOKEN_NONE = "hf_… (write access)"
REMEMBER_LABEL = "Remember the token for later publishes"
BUTTON = "Publish"
REQUESTED = "Publish requested — a worker uploads the files to the Hub."
HEADLINES = {"queued": "Publish queued", "running": "Publishing…", "succeeded": "Published", "failed": "Publish failed"}
CALLOUT = {"queued": "info", "running": "info", "succeeded": "success", "failed": "error"}
BUSY = ("queued", "running")


def suggested_repo(job: Job) -> str:
    """A repo name from the run's name, for the placeholder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", job.name or "").strip("-.")[:60]
    return slug or f"peft-studio-run-{job.id}"


def publishing_now(job: Job) -> bool:
    return job.publish_status in BUSY and not publishing.worker_vanished(job)


def state_html(job: Job, problem: str | None = None) -> str:
    """The publish's state in words with the link when done; `problem` is a refusal of the last click."""
    if problem:
        return f'<div class="ps-publish-state">{fragments.callout("error", HEADLINES["failed"], problem)}</div>'
    if not job.publish_status:
        return ""
    status, message = job.publish_status, job.publish_message or ""
    if publishing.worker_vanished(job):
        status, message = "failed", publishing.WORKER_GONE
    link = ""
    if status == "succeeded" and job.publish_url:
        link = f'<p><a id="ps-publish-link" href="{escape(job.publish_url)}" target="_blank" rel="noopener">{escape(job.publish_url)}</a></p>'
    return f'<div class="ps-publish-state">{fragments.callout(CALLOUT.get(status, "info"), HEADLINES.get(status, status), message, link)}</div>'


def _run_id(request: gr.Request | None) -> int | None:
    raw = (request.query_params.get("run") or "").strip() if request else ""
    return int(raw) if raw.isdigit() else None


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the panel where it is called (inside the run page) and wire its events."""
    run_state = gr.State(None)
    with gr.Column(visible=False, elem_id="ps-publish", elem_classes=["ps-card"]) as box:
        gr.HTML(f"<h3>{escape(TITLE)}</h3><p class=\"ps-muted\">{escape(INTRO)}</p>", apply_default_css=False)
        with gr.Row(equal_height=False):
            target = gr.Radio([(TARGETS["adapter"], "adapter")], value="adapter", label=TARGET_LABEL, elem_id="ps-publish-target", scale=2)
            repo = gr.Textbox(label=REPO_LABEL, info=REPO_INFO, elem_id="ps-publish-repo", scale=2)
            private = gr.Checkbox(value=True, label=PRIVATE_LABEL, elem_id="ps-publish-private", scale=1)
        with gr.Row(equal_height=False):
            token = gr.Textbox(label=TOKEN_LABEL, info=TOKEN_INFO, type="password", placeholder=TOKEN_NONE, elem_id="ps-publish-token", scale=3)
            remember = gr.Checkbox(value=True, label=REMEMBER_LABEL, elem_id="ps-publish-remember", scale=1)
            button = gr.Button(BUTTON, variant="primary", elem_id="ps-publish-button", scale=0, min_width=140)
        state = gr.HTML(elem_id="ps-publish-box", apply_default_css=False)
    timer = gr.Timer(POLL_SECONDS, active=False)
    outputs = [run_state, box, target, repo, token, state, timer]

    def refresh(run_id: int | None, *, first: bool = False, problem: str | None = None, clear_token: bool = False) -> list[Any]:
        if run_id is None:
            return [None, gr.update(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
        with session_scope(settings) as session:
            try:
                job = jobs.get_job(session, job_id=run_id)
            except jobs.JobNotFound:
                return [None, gr.update(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
            saved = publishing.has_saved_token(session)
            succeeded = job.status == "succeeded"
            merged = job.merge_status == "succeeded"
            choices = [(TARGETS["adapter"], "adapter")] + ([(TARGETS["merged"], "merged")] if merged else [])
            waiting = not jobs.JobStatus(job.status).terminal or publishing_now(job) or job.merge_status in BUSY
            return [
                run_id,
                gr.update(visible=succeeded),
                gr.update(choices=choices) if not first else gr.update(choices=choices, value=job.publish_target or "adapter"),
                gr.update(placeholder=suggested_repo(job), value=job.publish_repo_id or "") if first else gr.skip(),
                gr.update(placeholder=TOKEN_SAVED if saved else TOKEN_NONE, **({"value": ""} if clear_token else {})),
                state_html(job, problem),
                gr.Timer(active=waiting),
            ]

    def on_load(request: gr.Request) -> list[Any]:
        return refresh(_run_id(request), first=True)

    def on_tick(run_id: int | None) -> list[Any]:
        return refresh(run_id)

    def on_publish(run_id: int | None, target_: str, repo_: str, private_: bool, token_: str, remember_: bool) -> list[Any]:
        problem = None
        if run_id is not None:
            with session_scope(settings) as session:
                try:
                    publishing.request_publish(session, job_id=run_id, repo_id=repo_, target=target_ or "adapter", private=bool(private_),
                                               token=token_ or None, remember=bool(remember_), settings=settings)
                    gr.Info(REQUESTED)
                except (publishing.PublishRequestError, JobStateError) as exc:
                    problem = str(exc)
        return refresh(run_id, problem=problem, clear_token=True)  # the typed token leaves the page either way

    demo.load(on_load, None, outputs, show_progress="hidden")
    timer.tick(on_tick, run_state, outputs, show_progress="hidden", concurrency_limit=16)
    button.click(on_publish, [run_state, target, repo, private, token, remember], outputs, show_progress="hidden")
