"""The merge part of the run page: the state of the merge in words with a progress bar, then the merged
model's files with sizes, SHA-256 and download links.

Kept apart from run_detail so the page module stays about the run; it reads only the run's row and the
file list the worker wrote beside the merged folder (no hashing of gigabytes on a page refresh).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from app.db.models import Job
from app.services.artifact_files import list_files
from app.services.merges import method_can_merge, worker_vanished
from app.ui import formatting as fmt
from app.ui import fragments
from app.ui import strings as S

CALLOUT = {"queued": "info", "running": "info", "succeeded": "success", "failed": "error"}
BUSY = ("queued", "running")


def can_merge(job: Job) -> bool:
    """Show the button: the run succeeded, has an adapter its method can merge, and no live merge of it is under way."""
    has_adapter = any(a.kind == "adapter" for a in job.artifacts)
    return job.status == "succeeded" and has_adapter and method_can_merge(job) and not merging(job)


def merging(job: Job) -> bool:
    """A merge is queued or running on a live worker (the page keeps polling)."""
    return job.merge_status in BUSY and not worker_vanished(job)


def merge_html(job: Job) -> str:
    """Empty until a merge is asked for."""
    if not job.merge_status:
        return ""
    status, message = job.merge_status, job.merge_message or ""
    if worker_vanished(job):
        status, message = "failed", S.MERGE_WORKER_GONE
    head = fragments.callout(CALLOUT.get(status, "info"), S.MERGE_HEADLINES.get(status, status), message)
    body = ""
    if status in BUSY:
        total, done = job.merge_total, job.merge_done or 0
        fraction = done / total if total else None
        caption = S.MERGE_PROGRESS.format(done=done, total=total) if total else ""
        body = fragments.progress_bar(fraction, "running", caption)
    elif status == "succeeded":
        body = files_html(job)
    return f'<div class="ps-merge" id="ps-merge">{head}{body}</div>'


def files_html(job: Job) -> str:
    merged = [a for a in job.artifacts if a.kind == "merged"]
    if not merged:
        return ""
    artifact = merged[-1]
    folder = Path(artifact.path)
    if not folder.is_dir():
        return ""
    base = f"api/jobs/{job.id}/artifacts/{artifact.id}"
    rows = "".join(
        f"<tr><td><code>{escape(e.path)}</code></td><td>{fmt.size(e.size_bytes)}</td><td><code class=\"ps-sha\">{e.sha256}</code></td>"
        f'<td><a class="ps-act" href="{base}/files/{escape(e.path)}" download>{escape(S.DOWNLOAD)}</a></td></tr>'
        for e in list_files(folder)
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in S.MERGE_FILES_COLUMNS)
    zip_link = f'<p><a class="ps-act" id="ps-merged-zip" href="{base}/download" download>{escape(S.MERGE_ZIP)}</a> · {fmt.size(artifact.size_bytes)}</p>'
    note = f'<p class="ps-muted">{escape(S.MERGE_FILES_NOTE)}</p>'
    return f'{zip_link}<table class="ps-runs ps-merged-files"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}'
