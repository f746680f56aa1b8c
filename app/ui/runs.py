"""The Runs page (the studio's home): every run with status, progress, loss and a sparkline, live
(a combination shows its kind instead: it trains nothing).

The table is plain HTML (escaped in app.ui.fragments) refreshed by a gr.Timer from the database.
Row buttons raise a `select` event carrying (run id, action); Cancel and Delete go through
app.services, Delete only after an in-page confirmation. Open and Clone are links to the run page
and to the New run page with ?clone=<id> (a combination: the Combine page with ?clone=<id>).
"""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr

from app.db.session import session_scope
from app.services import jobs, runs
from app.services.jobs import JobStateError, JobStatus
from app.services.runs import RunSummary
from app.settings import Settings
from app.ui import formatting as fmt
from app.ui import fragments
from app.ui import strings as S

REFRESH_SECONDS = 2.0
FILTERS = ["all", *[s.value for s in JobStatus]]

# Buttons in rows raise a `select` event with the run id and the action; a click elsewhere on a row opens it.
ROW_ACTIONS_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (button) {
    event.preventDefault();
    trigger('select', {index: Number(button.dataset.id), value: button.dataset.action});
    return;
  }
  if (event.target.closest('a')) return;
  const row = event.target.closest('tr[data-run]');
  if (row) window.location.assign('run?run=' + row.dataset.run);
});
"""


def _row(run: RunSummary) -> str:
    total = f" / {run.progress_total:,}" if run.progress_total else ""
    combination = run.kind == "combine"
    counted = run.started_at and not combination  # a combination has no steps to count
    caption = f"{run.progress_step:,}{total}" if counted else S.STATUS_LABELS.get(run.status, run.status)
    method = f"{run.method} {S.COMBINATION_KIND.lower()}" if combination else run.method
    loss = fmt.loss(run.last_loss)
    actions = [f'<a class="ps-act" href="run?run={run.id}">{escape(S.ACTION_OPEN)}</a>']
    if combination:  # trained nothing: its kind instead of an empty loss sparkline; its clone is a prefilled Combine page
        actions.append(f'<a class="ps-act" href="combine?clone={run.id}">{escape(S.ACTION_CLONE)}</a>')
        loss_cell = f'<span class="ps-kind ps-muted">{escape(S.COMBINATION_KIND)}</span>'
    else:
        actions.append(f'<a class="ps-act" href="new?clone={run.id}">{escape(S.ACTION_CLONE)}</a>')
        loss_cell = f'<div class="ps-loss"><span>{escape(loss)}</span>{fragments.sparkline(run.loss_trace)}</div>'
    if not run.terminal:
        actions.append(f'<button class="ps-act ps-act-warn" data-action="cancel" data-id="{run.id}">{escape(S.ACTION_CANCEL)}</button>')
    else:
        actions.append(f'<button class="ps-act ps-act-danger" data-action="delete" data-id="{run.id}">{escape(S.ACTION_DELETE)}</button>')
    return (
        f'<tr data-run="{run.id}" class="ps-run-row">'
        f'<td class="ps-run-name"><a href="run?run={run.id}">#{run.id} · {escape(run.name)}</a>'
        f'<div class="ps-sub">{escape(run.base_model)} · {escape(method)}</div></td>'
        f"<td>{fragments.pill(run.status)}</td>"
        f'<td class="ps-col-progress">{fragments.progress_bar(run.fraction, run.status, caption)}</td>'
        f'<td class="ps-col-loss">{loss_cell}</td>'
        f'<td title="{escape(fmt.timestamp(run.created_at))}">{escape(fmt.ago(run.created_at))}</td>'
        f"<td>{escape(fmt.duration(run.duration_seconds))}</td>"
        f'<td class="ps-actions">{"".join(actions)}</td>'
        "</tr>"
    )


def table_html(items: list[RunSummary], status_filter: str) -> str:
    if not items:
        text = S.RUNS_EMPTY if status_filter == "all" else S.RUNS_EMPTY_FILTERED.format(status=S.STATUS_LABELS.get(status_filter, status_filter).lower())
        return (
            f'<div class="ps-empty"><p>{escape(text)}</p>'
            f'<a class="ps-cta" href="new">{escape(S.RUNS_EMPTY_CTA)}</a></div>'
        )
    head = "".join(f"<th>{escape(c)}</th>" for c in S.RUNS_COLUMNS)
    return f'<table class="ps-runs"><thead><tr>{head}</tr></thead><tbody>{"".join(_row(r) for r in items)}</tbody></table>'


def tiles_html(counts: dict[str, int]) -> str:
    return fragments.tiles([
        (S.TILE_RUNNING, str(counts.get("running", 0)), "ps-tile-running"),
        (S.TILE_QUEUED, str(counts.get("queued", 0)), "ps-tile-queued"),
        (S.TILE_SUCCEEDED, str(counts.get("succeeded", 0)), "ps-tile-succeeded"),
        (S.TILE_FAILED, str(counts.get("failed", 0)), "ps-tile-failed"),
    ])


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the page inside the current route."""
    new_button = f'<a class="ps-cta" href="new" id="ps-new-run-link">{escape(S.NEW_RUN_BUTTON)}</a>'
    gr.HTML(fragments.page_header(S.RUNS_TITLE, S.RUNS_SUBTITLE, right=new_button))
    tiles = gr.HTML(elem_id="ps-run-tiles")
    status_filter = gr.Radio(
        [(S.STATUS_FILTER_ALL, "all"), *[(S.STATUS_LABELS[s], s) for s in FILTERS[1:]]],
        value="all", show_label=False, container=False, elem_id="ps-run-filter", elem_classes=["ps-segmented"],
    )
    with gr.Row(visible=False, elem_classes=["ps-confirm"], elem_id="ps-confirm") as confirm_row:
        confirm_text = gr.HTML()
        confirm_yes = gr.Button(S.CONFIRM_DELETE_YES, variant="stop", size="sm", scale=0, min_width=120, elem_id="ps-confirm-yes")
        confirm_no = gr.Button(S.CONFIRM_DELETE_NO, size="sm", scale=0, min_width=100)
    table = gr.HTML(elem_id="ps-runs-table", js_on_load=ROW_ACTIONS_JS, apply_default_css=False)
    shown = gr.State("")
    pending_delete = gr.State(None)
    timer = gr.Timer(REFRESH_SECONDS)

    def refresh(filter_v: str, last: str) -> tuple[Any, Any, str]:
        with session_scope(settings) as session:
            items = runs.list_runs(session, status=None if filter_v == "all" else JobStatus(filter_v))
            counts = runs.count_by_status(session)
        html = table_html(items, filter_v)
        tiles_v = tiles_html(counts)
        if html + tiles_v == last:
            return gr.skip(), gr.skip(), last
        return tiles_v, html, html + tiles_v

    outputs = [tiles, table, shown]
    gr.on([demo.load, status_filter.change], refresh, [status_filter, gr.State("")], outputs, show_progress="hidden")
    timer.tick(refresh, [status_filter, shown], outputs, show_progress="hidden")

    def act(evt: gr.SelectData) -> tuple[Any, Any, Any]:
        run_id, action = int(evt.index), str(evt.value)
        with session_scope(settings) as session:
            try:
                if action == "cancel":
                    job = jobs.request_cancel(session, job_id=run_id)
                    gr.Info(S.CANCEL_REQUESTED.format(id=run_id, message=job.message))
                elif action == "delete":
                    job = jobs.get_job(session, job_id=run_id)
                    text = S.CONFIRM_DELETE.format(id=run_id, name=job.name)
                    return gr.update(visible=True), f'<div class="ps-confirm-text">{escape(text)}</div>', run_id
            except (JobStateError, jobs.JobNotFound) as exc:
                gr.Warning(str(exc))
        return gr.update(visible=False), gr.skip(), None

    def confirm_delete(run_id: int | None, filter_v: str) -> tuple[Any, ...]:
        if run_id is not None:
            with session_scope(settings) as session:
                try:
                    runs.delete_run(session, job_id=run_id, settings=settings)
                    gr.Info(S.DELETED.format(id=run_id))
                except (JobStateError, jobs.JobNotFound) as exc:
                    gr.Warning(str(exc))
        return (gr.update(visible=False), None, *refresh(filter_v, ""))

    table.select(act, None, [confirm_row, confirm_text, pending_delete], show_progress="hidden").then(
        refresh, [status_filter, gr.State("")], outputs, show_progress="hidden"
    )
    confirm_yes.click(confirm_delete, [pending_delete, status_filter], [confirm_row, pending_delete, *outputs], show_progress="hidden")
    confirm_no.click(lambda: (gr.update(visible=False), None), None, [confirm_row, pending_delete], show_progress="hidden")
