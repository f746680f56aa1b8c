"""The web process: the REST API with the studio's pages mounted on it, with safe defaults.

`uvicorn --factory app.server:create_app` (what `peft-studio run` serves). Safety choices, per
shared/reference/reliability.md (Gradio section):

- binds where settings say (127.0.0.1 by default; the CLI passes host and port to uvicorn);
- Gradio serves files only from its own upload cache, which lives under the data directory; the
  database, job folders, broker and uploads are explicitly blocked (blocked_paths wins over all);
- uploads are capped at STUDIO_MAX_UPLOAD_BYTES (Gradio's max_file_size, per file);
- no analytics, no /monitoring, no share link, no MCP server, no run history in the browser;
- the event queue is bounded, so a flood of requests is refused instead of piling up.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from app.api.main import create_app as create_api  # noqa: E402
from app.settings import Settings, get_settings  # noqa: E402
from app.ui.app import build_ui  # noqa: E402
from app.ui.theme import CSS, theme  # noqa: E402

QUEUE_MAX_SIZE = 256
DEFAULT_CONCURRENCY = 8


def gradio_cache_dir(settings: Settings) -> str:
    return str(settings.data_dir / "ui-cache")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API (under /api) with the studio UI at /."""
    settings = settings or get_settings()
    cache = gradio_cache_dir(settings)
    os.makedirs(cache, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = cache  # read when the Blocks and the upload route are created
    api = create_api()
    demo = build_ui(settings)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    blocked = [settings.jobs_dir, settings.broker_dir, settings.data_dir / "uploads", settings.data_dir / "datasets"]
    if settings.uses_sqlite:
        blocked.append(settings.data_dir / "studio.db")
    # Gradio warns that SSR is off for multipage apps even when it was asked to be off.
    warnings.filterwarnings("ignore", message="SSR mode is not supported with multi-page apps")
    return gr.mount_gradio_app(
        api,
        demo,
        path="",
        allowed_paths=[cache],
        blocked_paths=[str(p) for p in blocked],
        max_file_size=settings.max_upload_bytes,
        enable_monitoring=False,
        mcp_server=False,
        run_history=False,
        footer_links=[],
        ssr_mode=False,
        show_error=True,
        theme=theme(),
        css=CSS,
    )
