"""The Combine page (`combine`): make one LoRA adapter from several finished runs (add_weighted_adapter).

People tick two or more succeeded runs; the first one ticked fixes the base model and the method, and
the runs that cannot join it leave the list, each named below it with the reason (another base model,
a method other than LoRA, DoRA...). Then a weight per run, the combination type with the knobs it
uses, a name, and Start: app.services.combining stores the combination as a new job and a worker makes
it; its page is the ordinary run page, where the new adapter is downloaded, merged or published.
Nothing is kept in the web process: the lists are rebuilt from the database on every change.
`combine?clone=<id>` (the run page's clone of a combination) opens it prefilled with that combination's
runs, weights, type, knobs and a "Copy of" name.
"""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr

from app.db.session import session_scope
from app.services import combining, jobs
from app.services.combining import Candidate, CombineError
from app.settings import Settings
from app.ui import fragments

TITLE = "Combine adapters"
NAV_TITLE = "Combine"
SUBTITLE = ("Make one LoRA adapter from finished runs on the same base model: pick the runs, give each a weight, "
            "choose how to combine them. The result is a new run you can download, merge or publish.")
RUNS_LABEL = "Runs to combine"
RUNS_INFO = "Succeeded LoRA runs. The first run you tick sets the base model; runs that cannot join it are listed below with the reason."
NO_RUNS = "No run can be combined yet: finish at least two LoRA runs on the same base model."
UNAVAILABLE_TITLE = "Not available with your choice"
WEIGHT_LABEL = "Weight of #{id} · {name}"
TYPE_LABEL = "Combination"
TYPE_HELP = {
    "svd": "best low-rank approximation of the weighted sum (any ranks)",
    "cat": "stack the adapters: exactly the weighted sum, rank = sum of ranks",
    "linear": "weighted sum of the factors (equal ranks)",
    "ties": "TIES: prune small entries, elect a sign, average what agrees (equal ranks)",
    "dare_linear": "DARE: drop entries at random, rescale, weighted sum (equal ranks)",
    "dare_ties": "DARE drops then TIES sign election (equal ranks)",
    "magnitude_prune": "keep the largest entries of each adapter, weighted sum (equal ranks)",
}
DENSITY_LABEL = "Density (share of entries kept)"
SIGN_LABEL = "Sign election"
SVD_RANK_LABEL = "Rank of the result (0: the largest source rank)"
NAME_LABEL = "Name of the new adapter"
NAME_PLACEHOLDER = "e.g. support + billing"
START = "Start combining"
STARTED = "Combination #{id} queued: a worker is making it."
OPEN = "Open its page"
REFUSED = "These runs cannot be combined as asked"


def _label(c: Candidate) -> str:
    rank = f" r={c.rank}" if c.rank else ""
    return f"#{c.id} · {c.name} · {c.base_model} · {c.method}{rank}"


def layout(all_runs: list[Candidate], picked: list[int]) -> tuple[list[tuple[str, str]], list[int], list[tuple[Candidate, str]]]:
    """(choices, the picks that still fit, runs left out with their reason) for the current picks."""
    by_id = {c.id: c for c in all_runs}
    kept = [i for i in picked if i in by_id and by_id[i].reason is None]
    first = by_id[kept[0]] if kept else None
    choices, left_out = [], []
    for c in all_runs:
        reason = combining.pairing_reason(first, c) if first is not None else c.reason
        if reason:
            left_out.append((c, reason))
        else:
            choices.append((_label(c), str(c.id)))
    kept = [i for i in kept if first is None or combining.pairing_reason(first, by_id[i]) is None]
    return choices, kept, left_out


def unavailable_html(left_out: list[tuple[Candidate, str]]) -> str:
    if not left_out:
        return ""
    rows = "".join(f'<tr data-run="{c.id}"><td>#{c.id}</td><td>{escape(c.name)}</td><td>{escape(reason)}</td></tr>' for c, reason in left_out)
    return (f'<div class="ps-card ps-combine-unavailable"><h4>{escape(UNAVAILABLE_TITLE)}</h4>'
            f'<table class="ps-runs"><tbody>{rows}</tbody></table></div>')


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the page inside the current route."""
    gr.HTML(fragments.page_header(TITLE, SUBTITLE))
    empty = gr.HTML(visible=False, elem_id="ps-combine-empty")
    runs = gr.CheckboxGroup(label=RUNS_LABEL, info=RUNS_INFO, choices=[], elem_id="ps-combine-runs")
    unavailable = gr.HTML(elem_id="ps-combine-unavailable", apply_default_css=False)
    with gr.Row():
        weights = [gr.Number(value=1.0, visible=False, elem_id=f"ps-combine-weight-{i}", min_width=160) for i in range(combining.MAX_SOURCES)]
    with gr.Row(equal_height=False):
        kind = gr.Dropdown(label=TYPE_LABEL, choices=[(f"{t} — {TYPE_HELP[t]}", t) for t in combining.COMBINATION_TYPES], value="svd",
                           elem_id="ps-combine-type", scale=2)
        density = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label=DENSITY_LABEL, visible=False, elem_id="ps-combine-density")
        sign = gr.Radio(list(combining.SIGN_METHODS), value="total", label=SIGN_LABEL, visible=False, elem_id="ps-combine-sign")
        svd_rank = gr.Number(value=0, precision=0, minimum=0, label=SVD_RANK_LABEL, visible=True, elem_id="ps-combine-svd-rank")
    name = gr.Textbox(label=NAME_LABEL, placeholder=NAME_PLACEHOLDER, elem_id="ps-combine-name")
    start = gr.Button(START, variant="primary", elem_id="ps-combine-start")
    result = gr.HTML(elem_id="ps-combine-result", apply_default_css=False)

    def refresh(picked: list[str] | None) -> list[Any]:
        with session_scope(settings) as session:
            all_runs = combining.candidates(session)
        choices, kept, left_out = layout(all_runs, [int(p) for p in picked or []])
        by_id = {c.id: c for c in all_runs}
        updates = []
        for i in range(len(weights)):
            if i < len(kept):
                c = by_id[kept[i]]
                updates.append(gr.update(visible=True, label=WEIGHT_LABEL.format(id=c.id, name=c.name)))
            else:
                updates.append(gr.update(visible=False))
        note = fragments.callout("info", NO_RUNS) if len([c for c in all_runs if c.reason is None]) < 2 else ""
        return [gr.update(choices=choices, value=[str(i) for i in kept]), unavailable_html(left_out), gr.update(value=note, visible=bool(note)),
                *updates]

    def knobs(combination: str) -> list[Any]:
        return [gr.update(visible=combination in combining.NEEDS_DENSITY), gr.update(visible=combination in combining.NEEDS_SIGN),
                gr.update(visible=combination == "svd")]

    def on_start(picked: list[str] | None, combination: str, dens: float, sign_method: str, rank: float | None, title: str,
                 *given: float | None) -> str:
        ids = [int(p) for p in picked or []]
        values = [float(w) if w is not None else float("nan") for w in given[: len(ids)]]
        with session_scope(settings) as session:
            try:
                job = combining.request_combine(session, run_ids=ids, weights=values, combination_type=combination, name=title or "",
                                                density=dens, majority_sign_method=sign_method, svd_rank=int(rank) if rank else None,
                                                settings=settings)
            except CombineError as exc:
                return fragments.problem_list(REFUSED, exc.problems)
        link = f'<a class="ps-act" id="ps-combine-open" href="run?run={job.id}">{escape(OPEN)}</a>'
        return fragments.callout("success", STARTED.format(id=job.id), extra=link)

    def preset_of(request: gr.Request | None) -> dict[str, Any] | None:
        raw = (request.query_params.get("clone") or "").strip() if request else ""
        if not raw.isdigit():
            return None
        with session_scope(settings) as session:
            try:
                job = jobs.get_job(session, job_id=int(raw))
            except jobs.JobNotFound:
                return None
            return {**job.config["combine"], "name": f"Copy of {job.name}"[:200]} if combining.is_combine(job) else None

    def on_load(request: gr.Request) -> list[Any]:
        """The page as refresh draws it; with ?clone=<id> of a combination, its choices filled in (runs since gone are left out)."""
        preset = preset_of(request)
        if preset is None:
            return [*refresh(None), *[gr.skip() for _ in preset_outputs]]
        given = {int(src["run_id"]): float(src["weight"]) for src in preset.get("sources") or []}
        drawn = refresh([str(i) for i in given])
        for i, run_id in enumerate(drawn[0]["value"]):
            drawn[3 + i]["value"] = given[int(run_id)]
        combination = preset.get("combination_type") or "svd"
        return [*drawn, combination, preset.get("density") or 0.5, preset.get("majority_sign_method") or "total",
                preset.get("svd_rank") or 0, preset["name"]]

    page_outputs = [runs, unavailable, empty, *weights]
    preset_outputs = [kind, density, sign, svd_rank, name]
    demo.load(on_load, None, [*page_outputs, *preset_outputs], show_progress="hidden")
    runs.input(refresh, runs, page_outputs, show_progress="hidden")
    kind.change(knobs, kind, [density, sign, svd_rank], show_progress="hidden")
    start.click(on_start, [runs, kind, density, sign, svd_rank, name, *weights], result, show_progress="hidden")
