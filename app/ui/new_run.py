"""The New run page: base model, data, method (a form generated from its config schema), training, Start.

The method's fields are rendered with @gr.render from the method's JSON schema, so no method has UI
code here. The training fields come from TrainingSettings' schema the same way. The summary on the
right (trainable parameters, steps, rough memory) is recomputed on every change by
app.services.estimate; Start validates through app.jobspec (via app.services.jobs.create_job), shows
every problem next to its field and in one list, and on success opens the new run's page.
`?clone=<id>` prefills everything from an earlier run.

Data: the built-in demo, a stored dataset (app.services.datasets; format and mapping are set on the
Datasets page), or an upload, which is stored as a dataset and then picked. "Inspect what the model will
see" renders one row and the token-length histogram through app.services.inspector, with the same
reader and tokenization as the trainer.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app.datasets import SHAPE_TITLES, DatasetError
from app.db.session import session_scope
from app.jobspec import CHAT_TEMPLATE_CHOICES, DEMO_DATASET, DEMO_MODEL, JobSpecError, parse_job_spec
from app.services import catalog, jobs, runs
from app.services import datasets as stored
from app.services.estimate import RunEstimate, estimate_run
from app.services.uploads import dataset_rows
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


def _dataset(source: str, picked: str | None, template: str | None) -> tuple[dict[str, Any], list[str]]:
    extra = {"template": template} if template and template != "auto" else {}
    if source == "demo":
        return {"source": DEMO_DATASET, **extra}, []
    if not picked or not str(picked).isdigit():
        return {"source": "stored", **extra}, [f"dataset: {S.DATA_NEED_DATASET}"]
    return {"source": "stored", "dataset_id": int(picked), **extra}, []


def assemble(
    *, model: str, name: str, source: str, picked: str | None, template: str | None = None, peft_type: str,
    method_values: dict[str, Any], training_values: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """The job spec the form describes, plus problems found before validation (e.g. no dataset picked)."""
    dataset, problems = _dataset(source, picked, template)
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


def summary_html(spec: dict[str, Any]) -> str:
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
    inspecting = gr.State(False)  # the inspector refreshes on changes only once a person asked for it
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
                source = gr.Radio([(S.DATA_DEMO, "demo"), (S.DATA_STORED, "stored"), (S.DATA_UPLOAD_ANY, "upload")], value="demo",
                                  label=S.DATA_SOURCE_LABEL, elem_id="ps-data-source")
                dataset_pick = gr.Dropdown(label=S.DATA_PICK_LABEL, info=S.DATA_PICK_INFO, choices=[], value=None, filterable=False,
                                           visible=False, elem_id="ps-dataset-pick")
                upload = gr.File(label=S.DATA_UPLOAD_ANY_LABEL, file_types=[".csv", ".json", ".jsonl", ".parquet"], file_count="single",
                                 type="filepath", visible=False, elem_id="ps-upload")
                upload_note = gr.Markdown("", visible=False, elem_classes=["ps-upload-note"], elem_id="ps-data-note")
                template = gr.Dropdown(choices=list(CHAT_TEMPLATE_CHOICES), value="auto", label=S.DATA_TEMPLATE_LABEL, info=S.DATA_TEMPLATE_INFO,
                                       filterable=False, elem_id="ps-template")
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
            with gr.Group(elem_classes=["ps-card"], elem_id="ps-inspector"):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.INSPECT_TITLE)}</h3><p class="ps-sub">{escape(S.INSPECT_INTRO)}</p>')
                with gr.Row():
                    inspect_row = gr.Number(value=1, precision=0, minimum=1, label=S.INSPECT_ROW, scale=1, elem_id="ps-inspect-row")
                    inspect_btn = gr.Button(S.INSPECT_BUTTON, scale=2, elem_id="ps-inspect")
                sample = gr.HTML(elem_id="ps-sample")
                lengths = gr.HTML(elem_id="ps-lengths")
        with gr.Column(scale=2, min_width=320, elem_classes=["ps-sidebar"]):
            with gr.Group(elem_classes=["ps-card", "ps-summary-card"]):
                gr.HTML(f'<h3 class="ps-card-title">{escape(S.SECTION_SUMMARY)}</h3>')
                summary = gr.HTML(elem_id="ps-summary")
                problems = gr.HTML(elem_id="ps-problems")
                start = gr.Button(S.START, variant="primary", size="lg", elem_id="ps-start")

    training_fields = [f for f, _ in training_pairs]  # widget order: main fields, then advanced
    training_widgets = [w for _, w in training_pairs]
    static_inputs = [model, name, source, dataset_pick, template]

    def read_training(raws: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
        return read_form(training_fields, raws, "training")

    # Before the method form is (re)rendered its fields hold the defaults or the cloned values.
    def summary_from_defaults(model_v: str, name_v: str, source_v: str, picked_v: Any, template_v: Any, key: Any, *training_raws: Any) -> str:
        if not key:
            return gr.skip()
        peft_type, prefill_v = key["peft_type"], key["prefill"]
        training_values, _ = read_training(list(training_raws))
        spec, _ = assemble(model=model_v, name=name_v, source=source_v, picked=picked_v, template=template_v, peft_type=peft_type,
                           method_values=_defaults_for(peft_type, prefill_v), training_values=training_values)
        return summary_html(spec)

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
                model_v, name_v, source_v, picked_v, template_v, peft = raws[:n_static]
                training_values, bad = read_training(list(raws[n_static:n_static + n_train]))
                method_values, bad_method = read_form(fields, list(raws[n_static + n_train:]), "method")
                spec, extra = assemble(model=model_v, name=name_v, source=source_v, picked=picked_v, template=template_v, peft_type=peft,
                                       method_values=method_values, training_values=training_values)
                return spec, bad | bad_method, extra

            def refresh_summary(*raws: Any) -> str:
                spec, _, _ = read_all(raws)
                return summary_html(spec)

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
        [c.change for c in [model, name, source, dataset_pick, template, *training_widgets]],
        lambda n: n + 1,
        static_changed,
        static_changed,
        show_progress="hidden",
        trigger_mode="always_last",
    )

    # --- data source: demo, a stored dataset, or an upload that becomes one ---------------------------------

    def pick_source(choice: str, picked_v: str | None) -> tuple[Any, Any, Any]:
        note = _stored_note(picked_v, settings) if choice == "stored" else ""
        return (gr.update(visible=choice == "stored"), gr.update(visible=choice == "upload"),
                gr.update(visible=bool(note) or choice == "upload", value=note or (S.DS_UPLOAD_HINT if choice == "upload" else "")))

    source.change(pick_source, [source, dataset_pick], [dataset_pick, upload, upload_note], show_progress="hidden")
    dataset_pick.change(lambda picked_v: gr.update(visible=bool(picked_v), value=_stored_note(picked_v, settings)), dataset_pick, upload_note,
                        show_progress="hidden")

    def take_upload(path: str | None) -> tuple[Any, Any, Any]:
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            with session_scope(settings) as session:
                record = stored.import_file(session, Path(path), name=Path(path).name, settings=settings)
                picked_v = str(record.id)
        except DatasetError as exc:
            lines = "\n".join(f"- {line.strip()}" for line in exc.message.splitlines()[1:])
            return gr.skip(), gr.skip(), gr.update(visible=True, value=f"**{S.DATA_UPLOAD_FAILED}** {exc.message.splitlines()[0]}\n\n{lines}\n\n{exc.hint or ''}")
        return gr.update(value="stored"), gr.update(choices=_dataset_choices(settings), value=picked_v), gr.skip()

    upload.upload(take_upload, upload, [source, dataset_pick, upload_note], show_progress="minimal")

    # --- the sample inspector ---------------------------------------------------------------------------------

    def inspect(asked: bool, model_v: str, name_v: str, source_v: str, picked_v: str | None, template_v: str | None, row_v: Any,
                *training_raws: Any) -> tuple[Any, Any, bool]:
        if not asked:
            return gr.skip(), gr.skip(), False
        training_values, _ = read_training(list(training_raws))
        spec, found = assemble(model=model_v, name=name_v, source=source_v, picked=picked_v, template=template_v, peft_type="LORA",
                               method_values={}, training_values=training_values)
        if found:
            return fragments.callout("warning", _split(found[0])[1]), "", True
        try:
            return _inspect(spec, int(row_v or 1) - 1, settings)
        except DatasetError as exc:
            return fragments.callout("error", exc.message, exc.hint or ""), "", True
        except Exception as exc:  # noqa: BLE001 - e.g. a tokenizer that cannot be loaded offline: shown, not raised
            return fragments.callout("error", S.INSPECT_FAILED, str(exc)), "", True

    inspect_inputs = [inspecting, model, name, source, dataset_pick, template, inspect_row, *training_widgets]
    inspect_btn.click(lambda *a: inspect(True, *a[1:]), inspect_inputs, [sample, lengths, inspecting], show_progress="minimal")
    gr.on([c.change for c in [model, source, dataset_pick, template, *training_widgets]], inspect, inspect_inputs, [sample, lengths, inspecting],
          show_progress="hidden", trigger_mode="always_last")

    # --- page load: defaults, or a clone of an earlier run ---------------------------------------------

    def on_load(request: gr.Request) -> list[Any]:
        params = request.query_params if request else {}
        clone_id = (params.get("clone") or "").strip()
        spec = None
        if clone_id.isdigit():
            try:
                with session_scope(settings) as session:
                    spec = runs.clone_spec(session, job_id=int(clone_id))
            except jobs.JobNotFound:
                spec = None
        choices = _dataset_choices(settings)
        if spec is None:
            default_method = catalog.default_method()
            wanted = (params.get("dataset") or "").strip()
            picked_v = wanted if any(v == wanted for _, v in choices) else None
            return [gr.update(visible=False), gr.skip(), gr.skip(), "stored" if picked_v else gr.skip(), gr.update(choices=choices, value=picked_v),
                    gr.skip(), default_method, None, {"peft_type": default_method, "prefill": None}, *[gr.skip() for _ in training_widgets]]
        dataset = spec.get("dataset") or {}
        picked_v, problem = _cloned_dataset(dataset, settings)
        peft_type = str((spec.get("method") or {}).get("peft_type", "LORA")).upper()
        training = spec.get("training") or {}
        note = fragments.callout("info", S.NEW_CLONED_FROM.format(id=clone_id), problem or "")
        return [
            gr.update(visible=True, value=note),
            spec.get("base_model") or DEMO_MODEL,
            spec.get("name") or "",
            "stored" if picked_v else "demo",
            gr.update(choices=_dataset_choices(settings), value=picked_v),
            dataset.get("template") or "auto",
            peft_type,
            spec,
            {"peft_type": peft_type, "prefill": spec},
            *[training.get(f.name, f.default) for f in training_fields],
        ]

    demo.load(
        on_load,
        None,
        [cloned_note, model, name, source, dataset_pick, template, method, prefill, form_key, *training_widgets],
        show_progress="hidden",
    )


# --- datasets for the picker, a cloned run's data, the inspector -----------------------------------------


def _dataset_choices(settings: Settings) -> list[tuple[str, str]]:
    with session_scope(settings) as session:
        return [(f"#{r.id} · {r.name} — {r.rows:,} rows, {SHAPE_TITLES.get(r.detected or '', S.DS_NO_FORMAT) if r.format else S.DS_NO_FORMAT}",
                 str(r.id)) for r in stored.list_datasets(session)]


def _stored_note(picked_v: str | None, settings: Settings) -> str:
    if not picked_v or not str(picked_v).isdigit():
        return ""
    try:
        with session_scope(settings) as session:
            record = stored.get_dataset(session, int(picked_v))
            if not record.format:
                return S.DATA_NEEDS_MAPPING.format(name=record.name, id=record.id)
            mapping = record.mapping or {}
            shown = "; " + ", ".join(f"{field} ← {column}" for field, column in mapping.items() if field != column) if any(
                f != c for f, c in mapping.items()) else ""
            return S.DATA_STORED_NOTE.format(name=record.name, rows=record.rows, format=SHAPE_TITLES.get(record.detected or "", record.format),
                                             mapping=shown, id=record.id)
    except stored.DatasetNotFound as exc:
        return f"⚠ {exc}"


def _cloned_dataset(dataset: dict[str, Any], settings: Settings) -> tuple[str | None, str | None]:
    """The stored dataset a cloned run used (its file is brought in as one if it was a plain path), or a problem in words."""
    try:
        with session_scope(settings) as session:
            if dataset.get("source") == "stored" and dataset.get("dataset_id") is not None:
                return str(stored.get_dataset(session, int(dataset["dataset_id"])).id), None
            if dataset.get("source") in ("jsonl", "file") and dataset.get("path"):
                return str(stored.import_path(session, str(dataset["path"]), settings=settings).id), None
    except (stored.DatasetNotFound, DatasetError) as exc:
        return None, S.DATA_CLONE_MISSING.format(problem=str(exc).splitlines()[0])
    return None, None


def _inspect(spec: dict[str, Any], row: int, settings: Settings) -> tuple[str, str, bool]:
    """The sample and the length histogram for the form's spec (a stored dataset resolved to its file and mapping)."""
    from app.services.inspector import inspect_sample, length_report
    from app.ui.inspector import histogram_html, sample_html

    with session_scope(settings) as session:
        dataset = stored.resolve_spec(session, spec["dataset"])
    spec = {**spec, "dataset": dataset}
    return sample_html(inspect_sample(spec, row, settings)), histogram_html(length_report(spec, settings)), True
