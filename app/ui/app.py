"""The studio's pages as one multipage Gradio app: Runs (home), New run and the run page.

Each page is a module exposing `build(demo, settings)`; this file only places them on routes under
a shared top bar. Pages are added here by registering them in PAGES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import gradio as gr

from app.settings import Settings
from app.ui import combine, datasets, new_run, run_detail, runs
from app.ui import strings as S


@dataclass(frozen=True)
class Page:
    title: str
    path: str  # "" is the home page
    build: Callable[[gr.Blocks, Settings], None]
    in_nav: bool = True


PAGES: tuple[Page, ...] = (
    Page(S.NAV_RUNS, "", runs.build),
    Page(S.NAV_NEW, "new", new_run.build),
    Page(S.NAV_DATASETS, "datasets", datasets.build),
    Page(S.NAV_RUN, "run", run_detail.build, in_nav=False),
    Page(combine.NAV_TITLE, "combine", combine.build),
)


def topbar(active: str) -> str:
    links = "".join(
        f'<a href="{p.path or "./"}" class="{"active" if p.path == active else ""}">{escape(p.title)}</a>' for p in PAGES if p.in_nav
    )
    return (
        f'<header class="ps-topbar"><a class="ps-brand" href="./"><span class="ps-logo">◆</span>{escape(S.APP_TITLE)}</a>'
        f'<nav class="ps-nav">{links}</nav><span class="ps-tagline">{escape(S.APP_TAGLINE)}</span></header>'
    )


def _page(demo: gr.Blocks, page: Page, settings: Settings) -> None:
    gr.HTML(topbar(page.path), elem_id=f"ps-topbar-{page.path or 'home'}")
    page.build(demo, settings)


def build_ui(settings: Settings) -> gr.Blocks:
    """The Blocks app; mount it with app.server.create_app (which also sets the safety options)."""
    home, *others = PAGES
    with gr.Blocks(title=S.APP_TITLE, analytics_enabled=False, fill_width=False) as demo:
        _page(demo, home, settings)
    for page in others:
        with demo.route(page.title, page.path, show_in_navbar=page.in_nav):
            _page(demo, page, settings)
    return demo
