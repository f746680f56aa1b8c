"""Small HTML pieces the pages share: status pills, progress bars, sparklines, stat tiles, tables.

Pure functions from data to escaped HTML strings, so pages stay declarative and every value a person
typed (run names, model ids, log lines) is escaped in one place. Styles live in app/ui/theme.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from app.ui import strings as S


def pill(status: str) -> str:
    return f'<span class="ps-pill ps-{escape(status)}">{escape(S.STATUS_LABELS.get(status, status))}</span>'


def progress_bar(fraction: float | None, status: str, caption: str = "") -> str:
    width = 0 if fraction is None else max(min(fraction, 1.0), 0.0) * 100
    moving = " ps-indeterminate" if fraction is None and status in ("running", "queued") else ""
    cap = f'<div class="ps-sub">{escape(caption)}</div>' if caption else ""
    return f'<div class="ps-bar ps-bar-{escape(status)}{moving}"><div style="width:{width:.1f}%"></div></div>{cap}'


def sparkline(values: Sequence[float], width: int = 96, height: int = 26) -> str:
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values))
    return (
        f'<svg class="ps-spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.6" stroke-linejoin="round" points="{points}"/></svg>'
    )


def tiles(items: Iterable[tuple[str, str, str]]) -> str:
    """A row of stat tiles: (label, value, css modifier)."""
    cells = "".join(
        f'<div class="ps-tile {escape(mod)}"><div class="ps-tile-value">{escape(value)}</div><div class="ps-tile-label">{escape(label)}</div></div>'
        for label, value, mod in items
    )
    return f'<div class="ps-tiles">{cells}</div>'


def key_values(rows: Iterable[tuple[str, Any]], help_texts: dict[str, str] | None = None, defaults: dict[str, Any] | None = None) -> str:
    """A two-column table of settings; values equal to their default are muted, None shows as 'default'."""
    help_texts = help_texts or {}
    defaults = defaults or {}
    body = []
    for key, value in rows:
        if value is None:
            shown = '<span class="ps-muted">default</span>'
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, (list, dict)):
            shown = f"<code>{escape(_compact(value))}</code>"
        else:
            shown = escape(str(value))
        muted = ' class="ps-default"' if key in defaults and defaults[key] == value else ""
        tip = f' title="{escape(help_texts[key])}"' if key in help_texts else ""
        body.append(f"<tr><th{tip}>{escape(key)}</th><td{muted}>{shown}</td></tr>")
    return f'<table class="ps-kv">{"".join(body)}</table>'


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))


def callout(kind: str, title: str, body: str = "", extra: str = "") -> str:
    """A coloured box: kind is info, success, warning or error."""
    text = f"<div>{escape(body)}</div>" if body else ""
    return f'<div class="ps-callout ps-callout-{escape(kind)}"><strong>{escape(title)}</strong>{text}{extra}</div>'


def problem_list(title: str, problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return f'<div class="ps-callout ps-callout-error ps-problems"><strong>{escape(title)}</strong><ul>{items}</ul></div>'


def page_header(title: str, subtitle: str = "", right: str = "") -> str:
    sub = f'<p class="ps-page-sub">{escape(subtitle)}</p>' if subtitle else ""
    return f'<div class="ps-page-head"><div><h1 class="ps-page-title">{escape(title)}</h1>{sub}</div>{right}</div>'
