"""The run page (`run?run=<id>`): live loss and learning-rate charts, progress with ETA, status in words
with the next thing to try, the full configuration, the log tail and the artifacts with downloads.

A combination (app.services.combining, config kind "combine") trains nothing: its page shows what it
was combined from (each source run linked, with its weight) and how, instead of charts, ETA, training
tiles, and its Clone opens the Combine page prefilled; status, log, artifacts, merge and publish are
the same as for any run.

Everything shown is read from the database: the page keeps only what this browser tab has already
drawn (the metric rows it has, the HTML it last showed) so that a gr.Timer tick fetches just the new
metric rows and redraws only what changed. Reloading, a second browser or a restarted web process
rebuild the same page from the same rows. The timer stops once the run has ended and been drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

import gradio as gr
import pandas as pd

from app.db.models import Job
from app.db.session import session_scope
from app.services import artifacts, catalog, jobs, merges, metrics, runs
from app.services.jobs import JobStateError
from app.services.runs import RunSummary
from app.settings import Settings
from app.ui import formatting as fmt
from app.ui import fragments, merge_panel, publish_panel
from app.ui import strings as S

POLL_SECONDS = 1.5
MAX_CHART_POINTS = 1500
CALLOUT_KIND = {"queued": "info", "running": "info", "succeeded": "success", "failed": "error", "cancelled": "warning"}
LOSS_COLORS = {S.SERIES_TRAIN: "#4f46e5", S.SERIES_EVAL: "#f97316"}
OPEN_PICKED_JS = "(runId) => { if (runId) { window.location.assign('run?run=' + runId); } }"


@dataclass
class View:
    """What this tab has drawn of one run (per browser tab, rebuilt from the DB on load)."""

    run_id: int | None = None
    attempt: int = -1
    last_step: int = -1
    ids_at_last_step: set[int] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)
    drawn: dict[str, Any] = field(default_factory=dict)
    ended_drawn: bool = False


def _run_id(request: gr.Request | None) -> int | None:
    raw = (request.query_params.get("run") or "").strip() if request else ""
    return int(raw) if raw.isdigit() else None


def _new_rows(session: Any, view: View, job: Job) -> bool:
    """Fetch metric rows this tab has not drawn; start over when a new attempt re-logged past steps."""
    if job.attempt != view.attempt:
        view.attempt, view.last_step, view.ids_at_last_step, view.rows = job.attempt, -1, set(), []
    fresh = [m for m in metrics.metrics_since(session, job_id=job.id, after_step=view.last_step - 1) if m.id not in view.ids_at_last_step]
    if not fresh:
        return False
    for m in fresh:
        view.rows.append({"step": m.step, "loss": m.loss, "eval_loss": m.eval_loss, "lr": m.lr, "tokens_per_s": m.tokens_per_s,
                          "padding_share": m.padding_share})
        if m.step > view.last_step:
            view.last_step, view.ids_at_last_step = m.step, set()
        view.ids_at_last_step.add(m.id)
    return True


def _thin(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(points) <= MAX_CHART_POINTS:
        return points
    stride = len(points) // MAX_CHART_POINTS + 1
    return points[::stride] + [points[-1]]


def loss_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    train = _thin([{"step": r["step"], "loss": r["loss"], "series": S.SERIES_TRAIN} for r in rows if r["loss"] is not None])
    evals = [{"step": r["step"], "loss": r["eval_loss"], "series": S.SERIES_EVAL} for r in rows if r["eval_loss"] is not None]
    # Explicit dtypes: the chart picks its axis types from the first frame it gets, even an empty one.
    return pd.DataFrame(train + evals, columns=["step", "loss", "series"]).astype({"step": "int64", "loss": "float64"})


def lr_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(_thin([{"step": r["step"], "lr": r["lr"]} for r in rows if r["lr"] is not None]), columns=["step", "lr"])
    return frame.astype({"step": "int64", "lr": "float64"})


# --- HTML parts ----------------------------------------------------------------------------------


def is_combination(config: dict[str, Any] | None) -> bool:
    return isinstance(config, dict) and config.get("kind") == "combine"


def header_html(run: RunSummary) -> str:
    method = f"{run.method} {S.COMBINATION_KIND.lower()}" if run.kind == "combine" else run.method
    sub = f"{run.base_model} · {method} · {S.STATUS_LABELS.get(run.status, run.status)} · created {fmt.ago(run.created_at)}"
    return (
        f'<div class="ps-run-head"><div class="ps-run-title"><h1>#{run.id} · {escape(run.name)}</h1>{fragments.pill(run.status)}</div>'
        f'<p class="ps-page-sub">{escape(sub)}</p></div>'
    )


def status_html(run: RunSummary) -> str:
    hint = ""
    if run.error_hint:
        hint = f'<div class="ps-hint"><strong>{escape(S.WHAT_TO_TRY)}:</strong> {escape(run.error_hint)}</div>'
    return fragments.callout(CALLOUT_KIND.get(run.status, "info"), S.STATUS_HEADLINES.get(run.status, run.status), run.message, extra=hint)


def progress_html(run: RunSummary) -> str:
    if run.kind == "combine":
        steps = ""  # one quick step, no training steps to count
    elif run.progress_total:
        steps = S.PROGRESS_STEPS.format(step=run.progress_step, total=run.progress_total)
    elif run.progress_step:
        steps = S.PROGRESS_STEP.format(step=run.progress_step)
    else:
        steps = S.PROGRESS_WAITING if not run.terminal else ""
    parts = [steps] if steps else []
    if run.fraction is not None:
        parts.append(f"{run.fraction * 100:.0f}%")
    if run.duration_seconds is not None:
        parts.append((S.PROGRESS_TOOK if run.terminal else S.PROGRESS_ELAPSED).format(elapsed=fmt.duration(run.duration_seconds)))
    if run.eta_seconds is not None:
        parts.append(S.PROGRESS_ETA.format(eta=fmt.duration(run.eta_seconds)))
    if run.attempt > 1:
        parts.append(S.PROGRESS_ATTEMPT.format(attempt=run.attempt, max=run.max_attempts))
    return f'<div class="ps-progress" id="ps-progress">{fragments.progress_bar(run.fraction, run.status, " · ".join(parts))}</div>'


def padding_text(share: float | None) -> str:
    """'13%' of the step's token slots; '<1%' rather than a misleading 0% when some padding remains."""
    if share is None:
        return "—"
    percent = share * 100
    return "<1%" if 0 < percent < 0.5 else f"{percent:.0f}%"


def tiles_html(run: RunSummary, rows: list[dict[str, Any]]) -> str:
    last_lr = next((r["lr"] for r in reversed(rows) if r["lr"] is not None), None)
    speed = next((r["tokens_per_s"] for r in reversed(rows) if r["tokens_per_s"] is not None), None)
    padding = next((r["padding_share"] for r in reversed(rows) if r.get("padding_share") is not None), None)
    four = fragments.tiles([
        (S.TILE_LOSS, fmt.loss(run.last_loss), "ps-tile-loss"),
        (S.TILE_EVAL_LOSS, fmt.loss(run.last_eval_loss), "ps-tile-eval"),
        (S.TILE_LR, fmt.lr(last_lr), ""),
        (S.TILE_SPEED, f"{speed:,.0f}" if speed else "—", ""),
    ])
    # The padding tile carries a one-line help under its label, so it is written here rather than by fragments.tiles.
    cell = (f'<div class="ps-tile ps-tile-padding" title="{escape(S.TILE_PADDING_HELP)}"><div class="ps-tile-value">{padding_text(padding)}</div>'
            f'<div class="ps-tile-label">{escape(S.TILE_PADDING)}</div>'
            f'<div class="ps-tile-help" style="font-size:11px;color:#94a3b8;margin-top:2px">{escape(S.TILE_PADDING_NOTE)}</div></div>')
    opened = '<div class="ps-tiles" style="grid-template-columns: repeat(5, minmax(0, 1fr))">'
    return opened + four[len('<div class="ps-tiles">'):-len("</div>")] + cell + "</div>"


def _knob_rows(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """The combination type and only the knobs it uses (density for TIES/DARE/pruning, sign for TIES, rank for SVD)."""
    rows: list[tuple[str, Any]] = [(S.COMBINED_KNOBS["combination_type"], spec.get("combination_type"))]
    if spec.get("density") is not None:
        rows.append((S.COMBINED_KNOBS["density"], spec["density"]))
    if spec.get("combination_type") in ("ties", "dare_ties"):
        rows.append((S.COMBINED_KNOBS["majority_sign_method"], spec.get("majority_sign_method")))
    if spec.get("combination_type") == "svd":
        rows.append((S.COMBINED_KNOBS["svd_rank"], spec.get("svd_rank") or S.COMBINED_RANK_AUTO))
    if str(spec.get("combination_type", "")).startswith("dare"):
        rows.append((S.COMBINED_KNOBS["seed"], spec.get("seed")))
    return rows


def combined_html(config: dict[str, Any]) -> str:
    """'Combined from': each source run (linked to its page) with its name and weight, then the type and its knobs."""
    spec = config.get("combine") or {}
    rows = "".join(
        f'<tr data-source="{int(src["run_id"])}"><td><a href="run?run={int(src["run_id"])}" style="color:#4f46e5">#{int(src["run_id"])}</a></td>'
        f'<td>{escape(str(src.get("name", "")))}</td><td>{float(src.get("weight", 0)):g}</td></tr>'
        for src in spec.get("sources") or []
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in S.COMBINED_FROM_COLUMNS)
    return (
        f'<div class="ps-config ps-combined" id="ps-combined-from"><div class="ps-config-part"><h4>{escape(S.COMBINED_FROM)}</h4>'
        f'<table class="ps-runs ps-sources"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
        f'<div class="ps-config-part"><h4>{escape(S.COMBINED_HOW)}</h4>{fragments.key_values(_knob_rows(spec))}</div></div>'
    )


def _schema_rows(schema: dict[str, Any], given: dict[str, Any], skip: set[str]) -> tuple[list[tuple[str, Any]], dict[str, str], dict[str, Any]]:
    """Main fields always, advanced ones only when set to something else than their default."""
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in skip}
    defaults = {k: v.get("default") for k, v in props.items()}
    rows = [
        (k, given.get(k, defaults[k]))
        for k, v in props.items()
        if not v.get("x-advanced") or (k in given and given[k] != defaults[k])
    ]
    return rows, {k: v.get("description", "") for k, v in props.items()}, defaults


def config_html(config: dict[str, Any]) -> str:
    """The job's settings as three tables (model and data, method, training); defaults muted, help as tooltips."""
    if is_combination(config):  # no data, no training settings: the base model and how it was combined
        general = [("name", config.get("name")), ("base_model", config.get("base_model")), ("task_type", config.get("task_type"))]
        spec = config.get("combine") or {}
        knobs = [(k, spec[k]) for k in S.COMBINED_KNOBS if spec.get(k) is not None]  # the knobs its type does not use are None
        sections = [(S.CONFIG_MODEL_DATA, fragments.key_values(general)), (S.CONFIG_COMBINATION, fragments.key_values(knobs))]
        return '<div class="ps-config">' + "".join(f'<div class="ps-config-part"><h4>{escape(t)}</h4>{body}</div>' for t, body in sections) + "</div>"
    dataset = config.get("dataset") or {}
    data = S.CONFIG_DATASET_DEMO if dataset.get("source") == "demo" else f"{dataset.get('path')} ({dataset.get('format', 'auto')})"
    general = [("name", config.get("name")), ("base_model", config.get("base_model")), ("task_type", config.get("task_type")), ("dataset", data)]
    method = dict(config.get("method") or {})
    peft_type = str(method.pop("peft_type", ""))
    try:
        method_rows, method_help, method_defaults = _schema_rows(catalog.method_schema(peft_type), method, catalog.studio_managed_fields())
    except catalog.UnknownMethod:
        method_rows, method_help, method_defaults = list(method.items()), {}, {}
    training_rows, training_help, training_defaults = _schema_rows(catalog.training_schema(), config.get("training") or {}, set())
    sections = [
        (S.CONFIG_MODEL_DATA, fragments.key_values(general)),
        (f"{S.CONFIG_METHOD} · {peft_type}", fragments.key_values(method_rows, method_help, method_defaults)),
        (S.CONFIG_TRAINING, fragments.key_values(training_rows, training_help, training_defaults)),
    ]
    return '<div class="ps-config">' + "".join(f'<div class="ps-config-part"><h4>{escape(t)}</h4>{body}</div>' for t, body in sections) + "</div>"


def artifacts_html(job: Job) -> str:
    if not job.artifacts:
        return f'<p class="ps-muted">{escape(S.ARTIFACTS_EMPTY)}</p>'
    rows = []
    for a in job.artifacts:
        kind = S.ARTIFACT_KINDS.get(a.kind, a.kind)
        if a.kind == "hub_push":
            link = f'<a href="{escape(a.path)}" target="_blank" rel="noopener">{escape(a.path)}</a>'
        else:
            link = f'<a class="ps-act" href="api/jobs/{job.id}/artifacts/{a.id}/download" download>{escape(S.DOWNLOAD)}</a>'
        name = escape(a.path.rstrip("/").rsplit("/", 1)[-1])
        checksum = artifacts.download_checksum(a)  # of the bytes the link sends (a folder: its zip)
        size = fmt.size(checksum.size_bytes if checksum else a.size_bytes)
        sha = f'<code class="ps-sha" title="SHA-256 of the download">{checksum.sha256}</code>' if checksum else ""
        rows.append(f'<tr id="ps-artifact-{a.id}"><td>{escape(kind)}</td><td><code>{name}</code></td><td>{size}</td><td>{sha}</td>'
                    f"<td>{escape(fmt.ago(a.created_at))}</td><td>{link}</td></tr>")
    return f'<table class="ps-runs ps-artifacts"><tbody>{"".join(rows)}</tbody></table>'


def _adapter_link(job: Job) -> str | None:
    adapters = [a for a in job.artifacts if a.kind == "adapter"]
    return f"api/jobs/{job.id}/artifacts/{adapters[-1].id}/download" if adapters else None


# --- the page ------------------------------------------------------------------------------------


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the page inside the current route."""
    view_state = gr.State(None)
    with gr.Column(visible=False, elem_id="ps-run-picker") as picker:
        picker_note = gr.HTML()
        with gr.Row(equal_height=False, elem_classes=["ps-picker"]):
            pick = gr.Dropdown(label=S.RUN_PICK, info=S.RUN_PICK_INFO, choices=[], scale=1, elem_id="ps-run-pick")
            open_picked = gr.Button(S.ACTION_OPEN, variant="primary", size="md", scale=0, min_width=120, elem_classes=["ps-run-action"])
    with gr.Column(visible=False, elem_id="ps-run-page") as page:
        with gr.Row(equal_height=False, elem_classes=["ps-run-top"]):
            header = gr.HTML(elem_id="ps-run-header", apply_default_css=False, scale=1, min_width=360)
            download = gr.Button(S.DOWNLOAD_ADAPTER, variant="primary", size="md", visible=False, elem_id="ps-download-adapter", scale=0, min_width=0,
                                 elem_classes=["ps-run-action"])
            merge = gr.Button(S.MERGE_BUTTON, size="md", visible=False, elem_id="ps-merge-button", scale=0, min_width=0,
                              elem_classes=["ps-run-action"])
            clone = gr.Button(S.CLONE_RUN, size="md", scale=0, min_width=0, elem_id="ps-clone", elem_classes=["ps-run-action"])
            cancel = gr.Button(S.CANCEL_RUN, variant="stop", size="md", visible=False, scale=0, min_width=0, elem_id="ps-cancel", elem_classes=["ps-run-action"])
        status = gr.HTML(elem_id="ps-run-status", apply_default_css=False)
        progress = gr.HTML(apply_default_css=False)
        merge_box = gr.HTML(elem_id="ps-merge-box", apply_default_css=False)
        tiles = gr.HTML(elem_id="ps-run-tiles", apply_default_css=False)
        with gr.Row(equal_height=True, elem_id="ps-run-charts") as charts:
            with gr.Group(elem_classes=["ps-card", "ps-chart-card"]):
                loss_plot = gr.LinePlot(
                    x="step", y="loss", color="series", color_map=LOSS_COLORS, title=S.CHART_LOSS, height=300,
                    x_title="step", y_title="loss", tooltip="all", elem_id="ps-loss-chart", show_label=False, scale=3,
                )
            with gr.Group(elem_classes=["ps-card", "ps-chart-card"]):
                lr_plot = gr.LinePlot(x="step", y="lr", title=S.CHART_LR, height=300, x_title="step", y_title="learning rate", elem_id="ps-lr-chart", show_label=False, scale=2)
        with gr.Tabs(elem_classes=["ps-tabs"]):
            with gr.Tab(S.TAB_CONFIG):
                config = gr.HTML(apply_default_css=False)
                with gr.Accordion(S.CONFIG_SHOW_JSON, open=False):
                    config_json = gr.Code(language="json", interactive=False, show_label=False)
            with gr.Tab(S.TAB_LOG):
                log = gr.Textbox(label=S.LOG_LABEL, lines=14, max_lines=14, autoscroll=True, interactive=False, elem_classes=["ps-log"], elem_id="ps-log", buttons=["copy"])
            with gr.Tab(S.TAB_ARTIFACTS):
                artifacts = gr.HTML(elem_id="ps-artifacts", apply_default_css=False)
        publish_panel.build(demo, settings)  # its own events and timer; shown once the run succeeded
    timer = gr.Timer(POLL_SECONDS, active=False)

    parts = [header, status, progress, tiles, charts, loss_plot, lr_plot, config, config_json, log, artifacts, download, clone, cancel, merge_box, merge]
    outputs = [view_state, picker, picker_note, pick, page, timer, *parts]

    def draw(view: View, session: Any) -> list[Any]:
        """Updates for every part; unchanged ones are skipped so the browser does not redraw them."""
        summary, job = runs.get_run(session, job_id=view.run_id)
        new_metrics = _new_rows(session, view, job)
        adapter = _adapter_link(job)
        combination = is_combination(job.config)
        values: dict[str, Any] = {
            "header": header_html(summary),
            "status": status_html(summary),
            "progress": progress_html(summary),
            "tiles": combined_html(job.config) if combination else tiles_html(summary, view.rows),
            "charts": (combination,),
            "config": config_html(job.config),
            "config_json": json.dumps(job.config, indent=2),
            "log": job.log_tail or S.LOG_EMPTY,
            "artifacts": artifacts_html(job),
            "download": (adapter,),
            "clone": (view.run_id, combination),
            "cancel": (summary.terminal,),
            "merge_box": merge_panel.merge_html(job),
            "merge": (merge_panel.can_merge(job),),
        }
        out: list[Any] = []
        for name in ("header", "status", "progress", "tiles"):
            out.append(_changed(view, name, values[name]))
        out.append(_changed(view, "charts", values["charts"], gr.update(visible=not combination)))
        # Never send an empty frame: the chart fixes its series colours from the first data it gets.
        redraw = bool(view.rows) and (new_metrics or "plots" not in view.drawn)
        out.append(loss_frame(view.rows) if redraw else gr.skip())
        out.append(lr_frame(view.rows) if redraw else gr.skip())
        if redraw:
            view.drawn["plots"] = True
        for name in ("config", "config_json", "log", "artifacts"):
            out.append(_changed(view, name, values[name]))
        out.append(_changed(view, "download", values["download"], gr.update(visible=adapter is not None, link=adapter)))
        clone_to = gr.update(value=S.CLONE_COMBINATION, link=f"combine?clone={view.run_id}") if combination else gr.update(link=f"new?clone={view.run_id}")
        out.append(_changed(view, "clone", values["clone"], clone_to))
        out.append(_changed(view, "cancel", values["cancel"], gr.update(visible=not summary.terminal)))
        out.append(_changed(view, "merge_box", values["merge_box"]))
        out.append(_changed(view, "merge", values["merge"], gr.update(visible=values["merge"][0])))
        finished = summary.terminal and view.ended_drawn and not merge_panel.merging(job)  # keep polling while a merge runs
        view.ended_drawn = summary.terminal
        return [view, gr.update(visible=False), gr.skip(), gr.skip(), gr.update(visible=True), gr.Timer(active=not finished), *out]

    def show_picker(session: Any, note: str) -> list[Any]:
        choices = [(f"#{r.id} · {r.name} · {S.STATUS_LABELS.get(r.status, r.status)}", str(r.id)) for r in runs.list_runs(session, limit=200)]
        return [View(), gr.update(visible=True), note, gr.update(choices=choices, value=None), gr.update(visible=False),
                gr.Timer(active=False), *[gr.skip() for _ in parts]]

    def on_load(request: gr.Request) -> list[Any]:
        run_id = _run_id(request)
        with session_scope(settings) as session:
            if run_id is None:
                return show_picker(session, fragments.page_header(S.NAV_RUN, S.RUN_NONE))
            try:
                return draw(View(run_id=run_id), session)
            except jobs.JobNotFound:
                return show_picker(session, fragments.callout("warning", S.RUN_NOT_FOUND.format(id=run_id)))

    def on_tick(view: View | None) -> list[Any]:
        if view is None or view.run_id is None:
            return [gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False), *[gr.skip() for _ in parts]]
        with session_scope(settings) as session:
            try:
                return draw(view, session)
            except jobs.JobNotFound:
                return show_picker(session, fragments.callout("warning", S.RUN_NOT_FOUND.format(id=view.run_id)))

    def on_cancel(view: View | None) -> None:
        if view is None or view.run_id is None:
            return
        with session_scope(settings) as session:
            try:
                jobs.request_cancel(session, job_id=view.run_id)
                gr.Info(S.CANCELLED_BY_YOU)
            except JobStateError:
                gr.Warning(S.CANCEL_NOT_POSSIBLE)

    def on_merge(view: View | None) -> None:
        if view is None or view.run_id is None:
            return
        with session_scope(settings) as session:
            try:
                merges.request_merge(session, job_id=view.run_id, settings=settings)
                gr.Info(S.MERGE_REQUESTED)
            except JobStateError as exc:
                gr.Warning(str(exc))

    demo.load(on_load, None, outputs, show_progress="hidden")
    timer.tick(on_tick, view_state, outputs, show_progress="hidden", concurrency_limit=16)
    cancel.click(on_cancel, view_state, None, show_progress="hidden").then(on_tick, view_state, outputs, show_progress="hidden")
    merge.click(on_merge, view_state, None, show_progress="hidden").then(on_tick, view_state, outputs, show_progress="hidden")
    open_picked.click(None, pick, None, js=OPEN_PICKED_JS)
    pick.input(None, pick, None, js=OPEN_PICKED_JS)


def _changed(view: View, name: str, key: Any, update: Any = None) -> Any:
    """The update for a part if its content changed since this tab drew it, else gr.skip()."""
    if view.drawn.get(name) == key:
        return gr.skip()
    view.drawn[name] = key
    return key if update is None else update
