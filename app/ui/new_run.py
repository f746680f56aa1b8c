"""The New run page: base model, data, method (a form generated from its config schema), training, Start.

The method's fields are rendered with @gr.render from the method's JSON schema, so no method has UI
code here. The training fields come from TrainingSettings' schema the same way. The summary on the
right (trainable parameters, steps, rough memory) is recomputed on every change by
app.services.estimate; Start validates through app.jobspec (via app.services.jobs.create_job), shows
every problem next to its field and in one list, and on success opens the new run's page.
`?clone=<id>` prefills everything from an earlier run.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app.db.session import session_scope
from app.jobspec import DEMO_DATASET, DEMO_MODEL, JobSpecError, parse_job_spec
from app.services import catalog, jobs, runs
from app.services.estimate import RunEstimate, estimate_run
from app.services.uploads import UploadError, dataset_rows, store_jsonl
from app.settings import Settings
from app.ui import formatting as fmt
from app.ui import fragments
from app.ui import strings as S
from app.ui.schema_form import Field, describe_schema, info_for, read_form, widget

FIELDS_PER_ROW = 3
NAVIGATE_TO_RUN = "(runId) => { if (runId) { window.location.assign('run?run=' + runId); } }"


def _method_fields(peft_type: str) -> list[Field]:
    return describe_schema(catalog.method_schema(peft_type), skip=catalog.studio_managed_fields())


def _training_fields() -> list[Field]:
    return describe_schema(catalog.training_schema())


# --- turning the form into a job spec ------------------------------------------------------------


def _dataset(source: str, upload: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    if source != "jsonl":
        return {"source": DEMO_DATASET}, []
    if not upload or not upload.get("path"):
        return {"source": "jsonl"}, [f"dataset: {S.DATA_NEED_FILE}"]
    return {"source": "jsonl", "path": upload["path"]}, []


def assemble(
    *, model: str, name: str, source: str, upload: dict[str, Any] | None, peft_type: str,
    method_values: dict[str, Any], training_values: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """The job spec the form describes, plus problems found before validation (e.g. a missing upload)."""
    dataset, problems = _dataset(source, upload)
    method = {"peft_type": peft_type, **{k: v for k, v in method_values.items() if v is not None or k == "target_modules"}}
    spec = {
        "name": (name or "").strip() or None,
        "base_model": (model or "").strip(),
        "dataset": dataset,
        "method": method,
        "training": {k: v for k, v in training_values.items() if v is not None or k == "max_steps"},
    }
    return spec, problems


def _defaults_for(peft_type: str, prefill: dict[str, Any] | None) -> dict[str, Any]:
    """Method values right after (re)rendering its form: the cloned run's, else the schema defaults."""
    values = {f.name: f.default for f in _method_fields(peft_type)}
    cloned = (prefill or {}).get("method") or {}
    if str(cloned.get("peft_type", "")).upper() == peft_type:
        values.update({k: v for k, v in cloned.items() if k in values})
    return values


# --- the summary -------------------------------------------------------------------------------------


def summary_html(spec: dict[str, Any], upload: dict[str, Any] | None) -> str:
    rows = dataset_rows(spec.get("dataset"))
    est = estimate_run(spec, dataset_rows=rows)
    return _render_estimate(est, spec.get("training") or {})


def _render_estimate(est: RunEstimate, training: dict[str, Any]) -> str:
    trainable = fmt.params(est.trainable_params) if est.trainable_params is not None else S.ESTIMATE_UNKNOWN
    trainable_sub = ""
    if est.trainable_params is not None and est.total_params:
        trainable_sub = S.ESTIMATE_OF_TOTAL.format(pct=fmt.percent(est.trainable_params / est.total_params), total=fmt.params(est.total_params))
        if est.targeted_layers is not None:
            trainable_sub += " · " + S.ESTIMATE_LAYERS.format(layers=est.targeted_layers)
    steps = f"{est.total_steps:,}" if est.total_steps else S.ESTIMATE_UNKNOWN
    steps_sub = ""
    if est.total_steps and training.get("max_steps"):
        steps_sub = S.ESTIMATE_STEPS_MAX.format(rows=f"{est.train_rows:,}" if est.train_rows is not None else "?")
    elif est.total_steps and est.steps_per_epoch:
        steps_sub = S.ESTIMATE_STEPS_DETAIL.format(per_epoch=est.steps_per_epoch, epochs=f"{float(training.get('epochs', 3)):g}", rows=est.train_rows or 0)
    memory = f"≈ {fmt.size(est.total_bytes)}" if est.total_bytes else S.ESTIMATE_UNKNOWN
    memory_sub = ""
    if est.total_bytes:
        memory_sub = S.ESTIMATE_MEMORY_PARTS.format(weights=fmt.size(est.weights_bytes), adapter=fmt.size(est.adapter_state_bytes), acts=fmt.size(est.activation_bytes))

    def item(label: str, value: str, sub: str) -> str:
        return f'<div class="ps-est-item"><div class="ps-est-label">{escape(label)}</div><div class="ps-est-value">{escape(value)}</div><div class="ps-sub">{escape(sub)}</div></div>'

    notes = "".join(f"<li>{escape(n)}</li>" for n in est.notes)
    return (
        f'<div class="ps-estimate"><div class="ps-est-badge">{escape(S.ESTIMATE_ROUGH)}</div>'
        + item(S.ESTIMATE_TRAINABLE, trainable, trainable_sub)
        + item(S.ESTIMATE_STEPS, steps, steps_sub)
        + item(S.ESTIMATE_MEMORY, memory, memory_sub)
        + (f'<ul class="ps-est-notes">{notes}</ul>' if notes else "")
        + "</div>"
    )


# --- problems next to fields ---------------------------------------------------------------------------


def _split(problem: str) -> tuple[str, str]:
    path, sep, message = problem.partition(": ")
    return (path, message) if sep else ("", problem)


def _readable(problem: str, labels: dict[str, str]) -> str:
    path, message = _split(problem)
    return f"{labels[path]}: {message}" if path in labels else problem


def _field_update(field: Field, problem: str | None) -> dict[str, Any]:
    if problem:
        return gr.update(info=f"⚠ {problem}", elem_classes=["ps-field", "ps-invalid"])
    return gr.update(info=info_for(field), elem_classes=["ps-field"])


# --- layout --------------------------------------------------------------------------------------------


def _grid(fields: list[Field], values: dict[str, Any], key_prefix: str | None) -> list[gr.components.Component]:
    """Widgets in rows of FIELDS_PER_ROW, in schema order."""
    made: list[gr.components.Component] = []
    for start in range(0, len(fields), FIELDS_PER_ROW):
        with gr.Row(equal_height=False):
            for field in fields[start:start + FIELDS_PER_ROW]:
                key = f"{key_prefix}.{field.name}" if key_prefix else None
                made.append(widget(field, values.get(field.name, field.default), key=key))
    return made


def _form_fields(fields: list[Field], values: dict[str, Any], advanced_title: str, key_prefix: str | None) -> list[tuple[Field, Any]]:
    main = [f for f in fields if not f.advanced]
    advanced = [f for f in fields if f.advanced]
    widgets = _grid(main, values, key_prefix)
    if advanced:
        with gr.Accordion(advanced_title, open=False, elem_classes=["ps-advanced"]):
            widgets += _grid(advanced, values, key_prefix)
    return list(zip(main + advanced, widgets))


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the page inside the current route."""
    method_infos = catalog.methods()
    training_fields = _training_fields()
    training_defaults = {f.name: f.default for f in training_fields}
    descriptions = {m.peft_type: m.description for m in method_infos}

    gr.HTML(fragments.page_header(S.NEW_TITLE, S.NEW_SUBTITLE))
    cloned_note = gr.HTML(visible=False)
    prefill = gr.State(None)  # the cloned run's spec, if any
    # What the method form shows: {"peft_type", "prefill"}. The form re-renders only when this changes,
    # once per page load or method switch (two renders in a row would orphan the first one's listeners).
    form_key = gr.State(None)
    # Bumped by any change of the static fields. The rendered form listens to this instead of to the
    # static fields themselves: in Gradio 6.31 a listener added by @gr.render on a static component's
    # event silences the static listeners on that same event (e.g. showing the upload box).
    static_changed = gr.State(0)
    upload_state = gr.State(None)
    new_run_id = gr.Textbox(visible=False, elem_id="ps-new-run-id")

    with gr.Row(equal_height=False, elem_classes=["ps-new-run"]):
        with gr.Column(scale=3, min_width=480):
            with gr.Group(elem_classes=["ps-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_MODEL)}</h3>')
                with gr.Row():
                    model = gr.Dropdown(
                        choices=catalog.model_choices(), value=DEMO_MODEL, allow_custom_value=True, filterable=True,
                        label=S.MODEL_LABEL, info=S.MODEL_INFO, scale=3, elem_id="ps-model",
                    )
                    name = gr.Textbox(label=S.RUN_NAME_LABEL, placeholder=S.RUN_NAME_PLACEHOLDER, scale=2, elem_id="ps-run-name")
            with gr.Group(elem_classes=["ps-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_DATA)}</h3>')
                source = gr.Radio([(S.DATA_DEMO, "demo"), (S.DATA_UPLOAD, "jsonl")], value="demo", label=S.DATA_SOURCE_LABEL, elem_id="ps-data-source")
                upload = gr.File(label=S.DATA_UPLOAD_LABEL, file_types=[".jsonl"], file_count="single", type="filepath", visible=False, elem_id="ps-upload")
                upload_note = gr.Markdown(S.DATA_UPLOAD_HINT, visible=False, elem_classes=["ps-upload-note"])
            with gr.Group(elem_classes=["ps-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_METHOD)}</h3>')
                method = gr.Dropdown(
                    choices=[(m.title, m.peft_type) for m in method_infos], value=catalog.default_method(),
                    label=S.METHOD_LABEL, filterable=False, elem_id="ps-method",
                )
                method_note = gr.Markdown(descriptions.get(catalog.default_method(), ""), elem_classes=["ps-method-note"])
                method_area = gr.Column()
            with gr.Group(elem_classes=["ps-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_TRAINING)}</h3>')
                training_pairs = _form_fields(training_fields, training_defaults, S.ADVANCED_TRAINING, None)
        with gr.Column(scale=2, min_width=320, elem_classes=["ps-sidebar"]):
            with gr.Group(elem_classes=["ps-card", "ps-summary-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_SUMMARY)}</h3>')
                summary = gr.HTML(elem_id="ps-summary")
                problems = gr.HTML(elem_id="ps-problems")
                start = gr.Button(S.START, variant="primary", size="lg", elem_id="ps-start")

    training_fields = [f for f, _ in training_pairs]  # widget order: main fields, then advanced
    training_widgets = [w for _, w in training_pairs]
    static_inputs = [model, name, source, upload_state]

    def read_training(raws: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
        return read_form(training_fields, raws, "training")

    # Before the method form is (re)rendered its fields hold the defaults or the cloned values.
    def summary_from_defaults(model_v: str, name_v: str, source_v: str, upload_v: Any, key: Any, *training_raws: Any) -> str:
        if not key:
            return gr.skip()
        peft_type, prefill_v = key["peft_type"], key["prefill"]
        training_values, _ = read_training(list(training_raws))
        spec, _ = assemble(model=model_v, name=name_v, source=source_v, upload=upload_v, peft_type=peft_type,
                           method_values=_defaults_for(peft_type, prefill_v), training_values=training_values)
        return summary_html(spec, upload_v)

    form_key.change(
        summary_from_defaults,
        inputs=[*static_inputs, form_key, *training_widgets],
        outputs=summary,
        preprocess=False,
        show_progress="hidden",
    )
    method.change(
        lambda m, p: (descriptions.get(m, ""), {"peft_type": m, "prefill": p}), [method, prefill], [method_note, form_key], show_progress="hidden"
    )

    with method_area:

        @gr.render(inputs=[form_key], triggers=[form_key.change])
        def method_form(key: dict[str, Any] | None) -> None:
            if not key:
                return
            peft_type, prefill_v = key["peft_type"], key["prefill"]
            fields = _method_fields(peft_type)
            title = next((m.title for m in method_infos if m.peft_type == peft_type), peft_type)
            pairs = _form_fields(fields, _defaults_for(peft_type, prefill_v), S.ADVANCED_METHOD.format(method=title), None)
            fields = [f for f, _ in pairs]  # widget order: main fields, then advanced
            method_widgets = [w for _, w in pairs]
            all_inputs = [*static_inputs, method, *training_widgets, *method_widgets]
            n_static, n_train = len(static_inputs) + 1, len(training_widgets)
            labels = {f"method.{f.name}": f"{title} › {f.label}" for f in fields}
            labels |= {f"training.{f.name}": f"{S.SECTION_TRAINING[4:]} › {f.label}" for f in training_fields}
            labels |= {"base_model": S.MODEL_LABEL, "dataset": S.SECTION_DATA[4:], "name": S.RUN_NAME_LABEL}

            def read_all(raws: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
                model_v, name_v, source_v, upload_v, peft = raws[:n_static]
                training_values, bad = read_training(list(raws[n_static:n_static + n_train]))
                method_values, bad_method = read_form(fields, list(raws[n_static + n_train:]), "method")
                spec, extra = assemble(model=model_v, name=name_v, source=source_v, upload=upload_v, peft_type=peft,
                                       method_values=method_values, training_values=training_values)
                return spec, bad | bad_method, extra

            def refresh_summary(*raws: Any) -> str:
                spec, _, _ = read_all(raws)
                return summary_html(spec, raws[3])

            def start_run(*raws: Any) -> list[Any]:
                spec, unreadable, extra = read_all(raws)
                found = [f"{path}: {msg}" for path, msg in unreadable.items()] + extra
                try:
                    parse_job_spec(spec)
                except JobSpecError as exc:
                    found += exc.problems
                run_id = ""
                if not found:
                    try:
                        with session_scope(settings) as session:
                            run_id = str(jobs.create_job(session, spec=spec, settings=settings).id)
                    except JobSpecError as exc:
                        found = exc.problems
                by_path: dict[str, str] = {}
                for problem in found:
                    path, message = _split(problem)
                    by_path.setdefault(path, message)
                updates = [_field_update(f, by_path.get(f"training.{f.name}")) for f in training_fields]
                updates += [_field_update(f, by_path.get(f"method.{f.name}")) for f in fields]
                listed = fragments.problem_list(S.PROBLEMS_TITLE, [_readable(p, labels) for p in found])
                return [listed, run_id, *updates]

            gr.on(
                [static_changed.change, *[c.change for c in method_widgets]],
                refresh_summary,
                inputs=all_inputs,
                outputs=summary,
                preprocess=False,
                show_progress="hidden",
                trigger_mode="always_last",
            )
            start.click(
                start_run,
                inputs=all_inputs,
                outputs=[problems, new_run_id, *training_widgets, *method_widgets],
                preprocess=False,
                show_progress="minimal",
                concurrency_limit=4,
            ).success(None, inputs=new_run_id, js=NAVIGATE_TO_RUN)

    gr.on(
        [c.change for c in [model, name, source, upload_state, *training_widgets]],
        lambda n: n + 1,
        static_changed,
        static_changed,
        show_progress="hidden",
        trigger_mode="always_last",
    )

    # --- data source and upload ---------------------------------------------------------------------

    def pick_source(choice: str, upload_v: dict[str, Any] | None) -> tuple[Any, Any]:
        uploading = choice == "jsonl"
        note = _upload_note(upload_v) if uploading else ""
        return gr.update(visible=uploading), gr.update(visible=uploading, value=note or S.DATA_UPLOAD_HINT)

    source.change(pick_source, [source, upload_state], [upload, upload_note], show_progress="hidden")

    def take_upload(path: str | None) -> tuple[Any, str]:
        if not path:
            return None, S.DATA_UPLOAD_HINT
        try:
            stored = store_jsonl(Path(path), original_name=Path(path).name, settings=settings)
        except UploadError as exc:
            lines = "\n".join(f"- {p}" for p in exc.problems)
            return None, f"**{S.DATA_UPLOAD_FAILED}**\n\n{lines}"
        state = {"path": str(stored.path), "rows": stored.rows, "name": Path(path).name, "columns": list(stored.columns)}
        return state, _upload_note(state)

    upload.upload(take_upload, upload, [upload_state, upload_note], show_progress="minimal")
    upload.clear(lambda: (None, S.DATA_UPLOAD_HINT), None, [upload_state, upload_note], show_progress="hidden")

    # --- page load: defaults, or a clone of an earlier run ---------------------------------------------

    def on_load(request: gr.Request) -> list[Any]:
        clone_id = (request.query_params.get("clone") or "").strip() if request else ""
        spec = None
        if clone_id.isdigit():
            try:
                with session_scope(settings) as session:
                    spec = runs.clone_spec(session, job_id=int(clone_id))
            except jobs.JobNotFound:
                spec = None
        if spec is None:
            default_method = catalog.default_method()
            return [gr.update(visible=False), gr.skip(), gr.skip(), gr.skip(), None, gr.skip(), gr.skip(), default_method, None,
                    {"peft_type": default_method, "prefill": None}, *[gr.skip() for _ in training_widgets]]
        dataset = spec.get("dataset") or {}
        upload_v = None
        if dataset.get("source") == "jsonl" and dataset.get("path"):
            upload_v = {"path": dataset["path"], "rows": dataset_rows(dataset, settings), "name": Path(dataset["path"]).name, "columns": [], "cloned": True}
        peft_type = str((spec.get("method") or {}).get("peft_type", "LORA")).upper()
        training = spec.get("training") or {}
        note = fragments.callout("info", S.NEW_CLONED_FROM.format(id=clone_id))
        return [
            gr.update(visible=True, value=note),
            spec.get("base_model") or DEMO_MODEL,
            spec.get("name") or "",
            "jsonl" if upload_v else "demo",
            upload_v,
            gr.update(visible=bool(upload_v)),
            gr.update(visible=bool(upload_v), value=_upload_note(upload_v) if upload_v else S.DATA_UPLOAD_HINT),
            peft_type,
            spec,
            {"peft_type": peft_type, "prefill": spec},
            *[training.get(f.name, f.default) for f in training_fields],
        ]

    demo.load(
        on_load,
        None,
        [cloned_note, model, name, source, upload_state, upload, upload_note, method, prefill, form_key, *training_widgets],
        show_progress="hidden",
    )


def _upload_note(upload_v: dict[str, Any] | None) -> str:
    if not upload_v:
        return ""
    if upload_v.get("cloned"):
        return S.DATA_FROM_CLONE.format(path=upload_v["path"])
    columns = ", ".join(upload_v.get("columns") or []) or "?"
    return S.DATA_UPLOADED.format(name=upload_v.get("name", "file"), rows=upload_v.get("rows") or 0, columns=columns)
