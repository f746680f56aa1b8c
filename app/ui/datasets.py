"""The Datasets page: add a dataset (upload, server path, Hub id), list them, page through rows, set format and mapping, delete.

Everything goes through app.services.datasets, so the page, the API and the trainer read a dataset the
same way. The selected dataset is a Dropdown ("#id · name"); ?dataset=<id> preselects one.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app.datasets import SHAPE_TITLES, SHAPES, DatasetError, detect
from app.datasets.formats import fields_of
from app.db.models import Dataset
from app.db.session import session_scope
from app.services import datasets as service
from app.settings import Settings
from app.ui import formatting as fmt
from app.ui import fragments
from app.ui import strings as S

PAGE_SIZE = 10
ALL_FIELDS = tuple(dict.fromkeys(f for shape in SHAPES for f in fields_of(shape)))  # one dropdown per field name
FORMAT_CHOICES = [(SHAPE_TITLES[s], s) for s in SHAPES]


def format_label(record: Dataset) -> str:
    return SHAPE_TITLES.get(record.detected or "", S.DS_NO_FORMAT) if record.format else S.DS_NO_FORMAT


def choice(record: Dataset) -> tuple[str, str]:
    return f"#{record.id} · {record.name} — {record.rows:,} rows, {format_label(record)}", str(record.id)


def table_html(records: list[Dataset]) -> str:
    if not records:
        return f'<div class="ps-empty"><p>{escape(S.DS_EMPTY)}</p></div>'
    head = "".join(f"<th>{escape(c)}</th>" for c in S.DS_COLUMNS)
    body = "".join(
        f'<tr data-dataset="{r.id}"><td class="ps-run-name">#{r.id} · {escape(r.name)}<div class="ps-sub">{escape(r.origin or "")}</div></td>'
        f"<td>{r.rows:,}</td><td>{escape(format_label(r))}</td><td>{escape(fmt.size(r.size_bytes))}</td>"
        f'<td title="{escape(fmt.timestamp(r.created_at))}">{escape(fmt.ago(r.created_at))}</td>'
        f'<td><code title="{escape(r.sha256)}">{escape(r.sha256[:12])}</code></td></tr>'
        for r in records
    )
    return f'<table class="ps-runs ps-datasets"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _train_link(record: Dataset) -> str:
    return f' <a class="ps-act" href="new?dataset={record.id}" id="ps-ds-train">{escape(S.DS_TRAIN_ON_IT)}</a>'


def refused(exc: DatasetError) -> str:
    lines = exc.message.splitlines()
    body = "".join(f"<li>{escape(p.strip())}</li>" for p in lines[1:])
    extra = (f"<ul>{body}</ul>" if body else "") + (f"<div>{escape(exc.hint)}</div>" if exc.hint else "")
    return fragments.callout("error", S.DS_REFUSED, lines[0] if lines else "", extra)


def _field_updates(shape: str | None, columns: list[str], mapping: dict[str, str] | None) -> list[Any]:
    wanted = fields_of(shape) if shape in SHAPES else ()
    required = SHAPES[shape][0] if shape in SHAPES else ()
    mapping = mapping or {}
    updates = []
    for field in ALL_FIELDS:
        value = mapping.get(field) or (field if field in columns and field in wanted else None)
        label = (S.DS_FIELD if field in required else S.DS_FIELD_OPTIONAL).format(field=field)
        updates.append(gr.update(visible=field in wanted, choices=[("—", "")] + [(c, c) for c in columns], value=value or "", label=label))
    return updates


def build(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the page inside the current route."""
    gr.HTML(fragments.page_header(S.DS_TITLE, S.DS_SUBTITLE))
    with gr.Group(elem_classes=["ps-card"]):
        gr.HTML(f'<h3 class="ps-card-title">{escape(S.DS_ADD)}</h3>')
        with gr.Tabs():
            with gr.Tab(S.DS_TAB_UPLOAD, elem_id="ps-ds-tab-upload"):
                upload = gr.File(label=S.DS_UPLOAD_LABEL, file_types=[".csv", ".json", ".jsonl", ".parquet"], file_count="single",
                                 type="filepath", elem_id="ps-ds-upload")
                gr.Markdown(S.DS_UPLOAD_HINT, elem_classes=["ps-upload-note"])
            with gr.Tab(S.DS_TAB_PATH, elem_id="ps-ds-tab-path"):
                with gr.Row():
                    path = gr.Textbox(label=S.DS_PATH_LABEL, placeholder=S.DS_PATH_PLACEHOLDER, scale=4, elem_id="ps-ds-path")
                    add_path = gr.Button(S.DS_ADD_BUTTON, scale=1, elem_id="ps-ds-add-path")
            with gr.Tab(S.DS_TAB_HUB, elem_id="ps-ds-tab-hub"):
                with gr.Row():
                    repo = gr.Textbox(label=S.DS_HUB_REPO, placeholder=S.DS_HUB_REPO_PLACEHOLDER, scale=3, elem_id="ps-ds-repo")
                    config = gr.Textbox(label=S.DS_HUB_CONFIG, scale=2, elem_id="ps-ds-config")
                    split = gr.Textbox(label=S.DS_HUB_SPLIT, value="train", scale=1, elem_id="ps-ds-split")
                    add_hub = gr.Button(S.DS_ADD_BUTTON, scale=1, elem_id="ps-ds-add-hub")
                gr.Markdown(S.DS_HUB_NOTE, elem_classes=["ps-upload-note"])
        outcome = gr.HTML(elem_id="ps-ds-outcome")
    with gr.Group(elem_classes=["ps-card"]):
        gr.HTML(f'<h3 class="ps-card-title">{escape(S.DS_LIST)}</h3>')
        listing = gr.HTML(elem_id="ps-ds-list")
    with gr.Group(elem_classes=["ps-card"]):
        gr.HTML(f'<h3 class="ps-card-title">{escape(S.DS_DETAIL)}</h3>')
        picked = gr.Dropdown(label=S.DS_PICK, choices=[], value=None, filterable=False, elem_id="ps-ds-pick")
        detail = gr.HTML(elem_id="ps-ds-detail")
        shape = gr.Dropdown(label=S.DS_FORMAT, info=S.DS_FORMAT_INFO, choices=FORMAT_CHOICES, value=None, filterable=False, elem_id="ps-ds-format")
        with gr.Row():
            field_boxes = [gr.Dropdown(label=f, choices=[], visible=False, filterable=False, elem_id=f"ps-ds-field-{f}", min_width=160)
                           for f in ALL_FIELDS]
        with gr.Row():
            save = gr.Button(S.DS_SAVE_MAPPING, variant="primary", elem_id="ps-ds-save")
            delete = gr.Button(S.DS_DELETE, variant="stop", elem_id="ps-ds-delete")
            confirm = gr.Button(S.DS_DELETE_CONFIRM, variant="stop", visible=False, elem_id="ps-ds-delete-confirm")
        saved = gr.HTML(elem_id="ps-ds-saved")
    with gr.Group(elem_classes=["ps-card"]):
        gr.HTML(f'<h3 class="ps-card-title">{escape(S.DS_PREVIEW)}</h3>')
        rows = gr.Dataframe(interactive=False, wrap=True, elem_id="ps-ds-rows", max_height=420)
        with gr.Row():
            prev_page = gr.Button(S.DS_PREV, size="sm", elem_id="ps-ds-prev")
            page_note = gr.HTML(elem_id="ps-ds-page")
            next_page = gr.Button(S.DS_NEXT, size="sm", elem_id="ps-ds-next")
    page = gr.State(1)

    def listing_and_choices(selected: str | None) -> tuple[str, Any]:
        with session_scope(settings) as session:
            records = service.list_datasets(session)
            ids = {str(r.id) for r in records}
            return table_html(records), gr.update(choices=[choice(r) for r in records], value=selected if selected in ids else None)

    def show(selected: str | None, page_v: int = 1) -> list[Any]:
        """Detail, format, field dropdowns, preview page for the selected dataset."""
        blank = ["", gr.update(value=None), *_field_updates(None, [], None), gr.update(value=[]), "", 1]
        if not selected:
            return blank
        try:
            with session_scope(settings) as session:
                record = service.get_dataset(session, int(selected))
                view = service.preview(session, record.id, page=page_v, page_size=PAGE_SIZE)
                shape_v, columns, mapping = record.detected if record.format else None, list(record.columns or []), record.mapping
                facts = [(S.DS_COLUMNS[1], f"{record.rows:,}"), ("Columns", ", ".join(columns)), (S.DS_COLUMNS[3], fmt.size(record.size_bytes)),
                         ("From", record.origin or record.source), (S.DS_COLUMNS[5], record.sha256)]
                note = (fragments.callout("success", S.DS_GUESSED.format(format=SHAPE_TITLES[record.detected]), extra=_train_link(record))
                        if record.format and record.detected else fragments.callout("warning", S.DS_NEEDS_MAPPING))
        except (service.DatasetNotFound, DatasetError) as exc:
            return [fragments.callout("error", str(exc)), *blank[1:]]
        table = {"headers": view.columns, "data": view.rows}
        pager = f'<div class="ps-sub">{escape(S.DS_PAGE.format(page=view.page, pages=view.pages, total=view.total))}</div>'
        return [note + fragments.key_values(facts), gr.update(value=shape_v), *_field_updates(shape_v, columns, mapping), gr.update(value=table), pager, view.page]

    detail_outputs = [detail, shape, *field_boxes, rows, page_note, page]

    def after_import(made: Dataset | None, error: DatasetError | None, existed: bool) -> list[Any]:
        if error is not None:
            table, choices = listing_and_choices(None)
            return [refused(error), table, choices]
        assert made is not None
        message = (S.DS_ALREADY.format(name=made.name) if existed else
                   (S.DS_ADDED if made.format and detect(list(made.columns or [])).sure else S.DS_ADDED_UNSURE).format(name=made.name, rows=made.rows))
        table, choices = listing_and_choices(str(made.id))
        sure = made.format and detect(list(made.columns or [])).sure
        return [fragments.callout("success" if sure else "warning", message, extra=_train_link(made) if made.format else ""), table, choices]

    def run_import(action: Any) -> list[Any]:
        try:
            with session_scope(settings) as session:
                before = {r.id for r in service.list_datasets(session)}
                made = action(session)
                return after_import(made, None, made.id in before)
        except DatasetError as exc:
            return after_import(None, exc, False)

    import_outputs = [outcome, listing, picked]
    upload.upload(lambda p: run_import(lambda s: service.import_file(s, Path(p), name=Path(p).name, settings=settings)) if p else [gr.skip()] * 3,
                  upload, import_outputs, show_progress="minimal")
    add_path.click(lambda p: run_import(lambda s: service.import_path(s, (p or "").strip(), settings=settings)), path, import_outputs)
    add_hub.click(lambda r, c, sp: run_import(lambda s: service.import_hub(s, r, config=(c or "").strip() or None, split=sp, settings=settings)),
                  [repo, config, split], import_outputs)
    picked.change(lambda sel: [*show(sel), gr.update(visible=False), ""], picked, [*detail_outputs, confirm, saved], show_progress="hidden")

    def pick_shape(selected: str | None, shape_v: str | None, *current: str) -> list[Any]:
        if not selected or not shape_v:
            return [gr.skip()] * len(field_boxes)
        with session_scope(settings) as session:
            record = service.get_dataset(session, int(selected))
            columns = list(record.columns or [])
        kept = {f: v for f, v in zip(ALL_FIELDS, current) if v}
        return _field_updates(shape_v, columns, kept)

    shape.input(pick_shape, [picked, shape, *field_boxes], field_boxes, show_progress="hidden")

    def save_mapping(selected: str | None, shape_v: str | None, *values: str) -> list[Any]:
        if not selected or not shape_v:
            return [fragments.callout("warning", S.DS_NEEDS_MAPPING), gr.skip(), gr.skip(), *[gr.skip()] * len(detail_outputs)]
        wanted = fields_of(shape_v)
        mapping = {f: v for f, v in zip(ALL_FIELDS, values) if v and f in wanted}
        try:
            with session_scope(settings) as session:
                record = service.update_mapping(session, int(selected), shape=shape_v, mapping=mapping)
                message = fragments.callout("success", S.DS_MAPPING_SAVED.format(rows=record.rows, format=SHAPE_TITLES[shape_v]))
        except DatasetError as exc:
            return [refused(exc), gr.skip(), gr.skip(), *[gr.skip()] * len(detail_outputs)]
        table, choices = listing_and_choices(selected)
        return [message, table, choices, *show(selected)]

    save.click(save_mapping, [picked, shape, *field_boxes], [saved, listing, picked, *detail_outputs])

    def turn(selected: str | None, page_v: int, step: int) -> list[Any]:
        return show(selected, max(1, page_v + step))

    prev_page.click(lambda sel, p: turn(sel, p, -1), [picked, page], detail_outputs, show_progress="hidden")
    next_page.click(lambda sel, p: turn(sel, p, 1), [picked, page], detail_outputs, show_progress="hidden")

    def ask_delete(selected: str | None) -> tuple[Any, str]:
        if not selected:
            return gr.update(visible=False), ""
        with session_scope(settings) as session:
            name = service.get_dataset(session, int(selected)).name
        return gr.update(visible=True), fragments.callout("warning", S.DS_DELETE_ASK.format(name=name))

    delete.click(ask_delete, picked, [confirm, saved], show_progress="hidden")

    def do_delete(selected: str | None) -> list[Any]:
        try:
            with session_scope(settings) as session:
                name = service.get_dataset(session, int(selected)).name
                service.delete_dataset(session, int(selected))
            message = fragments.callout("success", S.DS_DELETED.format(name=name))
        except (service.DatasetInUse, service.DatasetNotFound) as exc:
            message = fragments.callout("error", str(exc))
        table, choices = listing_and_choices(None)
        return [gr.update(visible=False), message, table, choices]

    confirm.click(do_delete, picked, [confirm, saved, listing, picked])

    def on_load(request: gr.Request) -> list[Any]:
        wanted = (request.query_params.get("dataset") or "").strip() if request else ""
        table, choices = listing_and_choices(wanted or None)
        return [table, choices]

    demo.load(on_load, None, [listing, picked], show_progress="hidden")
