"""HTML for the sample inspector (New run flow, before Start): one row's text and tokens, and the length histogram.

Plain HTML strings with inline styles (the page embeds them in a gr.HTML); everything from the data is escaped.
Trained tokens are green chips with a solid border, masked ones grey with a dashed border (colour is not the
only cue), special tokens are bold and outlined, and EOS is labelled.
"""

from __future__ import annotations

from html import escape

from app.datasets import DatasetError
from app.services.inspector import LengthReport, SampleView, TokenView

TRAINED_STYLE = "background:#dcfce7;color:#14532d;border:1px solid #16a34a"
MASKED_STYLE = "background:#f1f5f9;color:#64748b;border:1px dashed #94a3b8"
SPECIAL_EXTRA = ";font-weight:700;outline:1px solid #7c3aed"
CHIP = "display:inline-block;margin:1px;padding:0 3px;border-radius:3px;font-family:monospace;font-size:12px;white-space:pre"
WHITESPACE = {"\n": "\u21b5", "\t": "\u21e5", " ": "\u00b7"}  # shown visibly inside chips


def _visible(piece: str) -> str:
    return "".join(WHITESPACE.get(ch, ch) for ch in piece) or "\u2205"


def _chip(token: TokenView) -> str:
    style = (TRAINED_STYLE if token.trained else MASKED_STYLE) + (SPECIAL_EXTRA if token.special else "")
    kind = "trained" if token.trained else "masked"
    label = "EOS" if token.eos and not token.piece else "\u2026" if token.continuation else _visible(token.piece)
    title = f"id {token.id} · {kind}" + (" · special" if token.special else "") + (" · EOS" if token.eos else "")
    title += " · more bytes of the character before" if token.continuation else ""
    eos = " data-eos=\"1\"" if token.eos else ""
    special = " data-special=\"1\"" if token.special else ""
    return f'<span class="ps-tok ps-tok-{kind}" data-id="{token.id}"{special}{eos} title="{escape(title)}" style="{CHIP};{style}">{escape(label)}</span>'


def _legend() -> str:
    return (
        '<div class="ps-tok-legend" style="font-size:12px;margin:6px 0">'
        f'<span style="{CHIP};{TRAINED_STYLE}">trained</span> the model learns to predict these '
        f'<span style="{CHIP};{MASKED_STYLE}">masked</span> context only, no loss '
        f'<span style="{CHIP};{MASKED_STYLE}{SPECIAL_EXTRA}">special</span> a special token '
        "(\u21b5 newline, \u00b7 space)</div>"
    )


def sample_html(view: SampleView) -> str:
    """The row's rendered text, then its tokens as chips, with counts and warnings in words."""
    cut = f", cut to {view.max_seq_length}" if view.truncated else ""
    head = (
        f"<div class=\"ps-sample-head\"><b>Row {view.row + 1} of {view.rows}</b> ({escape(view.source)}, line {view.line}; "
        f"{escape(view.format.replace('_', '/'))}"
        + (f", {escape(view.template)}" if view.template else "")
        + f"): {view.length} tokens{cut}; {view.trained_tokens} trained, {view.masked_tokens} masked"
        + ("" if view.completions_only else " (training on all tokens)")
        + "</div>"
    )
    warnings = "".join(f'<div class="ps-sample-warning" style="color:#b45309">\u26a0 {escape(w)}</div>' for w in view.warnings)
    shown = escape(view.text)
    if view.cut_at is not None:  # what max_seq_length cuts off: greyed and struck through
        shown = escape(view.text[: view.cut_at]) + (
            f'<span class="ps-sample-cut" title="past max_seq_length={view.max_seq_length}: not trained on" '
            f'style="color:#94a3b8;text-decoration:line-through">{escape(view.text[view.cut_at :])}</span>'
        )
    text = (
        '<pre class="ps-sample-text" style="white-space:pre-wrap;background:#f8fafc;border:1px solid #e2e8f0;'
        f'padding:8px;border-radius:4px;font-size:12px">{shown}</pre>'
    )
    chips = '<div class="ps-sample-tokens" style="line-height:1.9">' + "".join(_chip(t) for t in view.tokens) + "</div>"
    return f'<div class="ps-sample">{head}{warnings}{text}{_legend()}{chips}</div>'


def histogram_html(report: LengthReport, width: int = 480, height: int = 120) -> str:
    """An inline SVG histogram of token lengths with the max_seq_length line, then the counts in words."""
    bins = report.bins
    top = max((b.count for b in bins), default=0) or 1
    span = bins[-1].high if bins else report.max_seq_length
    bar_w = width / max(len(bins), 1)
    bars = []
    for k, b in enumerate(bins):
        h = round(b.count / top * (height - 14), 1)
        over = b.low > report.max_seq_length
        colour = "#f97316" if over else "#3b82f6"
        bars.append(
            f'<rect x="{k * bar_w + 1:.1f}" y="{height - h:.1f}" width="{bar_w - 2:.1f}" height="{h}" fill="{colour}">'
            f"<title>{b.low}\u2013{b.high} tokens: {b.count} rows</title></rect>"
        )
    x = min(report.max_seq_length / span, 1.0) * width
    line = (
        f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#dc2626" stroke-width="2" stroke-dasharray="4 2"/>'
        f'<text x="{max(x - 4, 40):.1f}" y="10" font-size="10" text-anchor="end" fill="#dc2626">max_seq_length {report.max_seq_length}</text>'
    )
    svg = (
        f'<svg class="ps-length-histogram" role="img" aria-label="token lengths" width="{width}" height="{height + 14}" '
        f'viewBox="0 0 {width} {height + 14}">{"".join(bars)}{line}'
        f'<text x="0" y="{height + 12}" font-size="10">1</text>'
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{span} tokens</text></svg>'
    )
    words = (
        f"{report.rows} rows measured: {report.mean:.0f} tokens on average, the longest {report.longest}. "
        f"{report.truncated} would be cut at max_seq_length={report.max_seq_length}; "
        f"{report.dropped} would be dropped (nothing left to learn from)."
    )
    if report.packing and report.packed_sequences is not None:
        words += f" Packed, they fill about {report.packed_sequences} sequences of {report.max_seq_length} tokens."
    warnings = "".join(f'<div class="ps-length-warning" style="color:#b45309">\u26a0 {escape(w)}</div>' for w in report.warnings)
    return f'<div class="ps-lengths">{svg}<div class="ps-length-words">{escape(words)}</div>{warnings}</div>'


def error_html(exc: DatasetError) -> str:
    """What the inspector cannot show, and what to do about it (in place of the sample or the histogram)."""
    hint = f'<div class="ps-inspector-hint">{escape(exc.hint)}</div>' if exc.hint else ""
    return f'<div class="ps-inspector-error" role="alert" style="color:#b91c1c"><b>{escape(exc.message)}</b>{hint}</div>'
