"""The studio's look: a Soft theme with system fonts (nothing fetched from the internet) and the CSS of
the shared HTML pieces (app.ui.fragments) and page layout."""

from __future__ import annotations

import gradio as gr

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="indigo", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=MONO_FONTS).set(
        body_background_fill="#f5f6fa",
        block_radius="12px",
        block_border_width="1px",
        block_shadow="none",
        button_large_radius="10px",
        button_medium_radius="8px",
        input_radius="8px",
        block_title_background_fill="transparent",
        block_title_text_color="*neutral_800",
        block_title_text_weight="600",
        block_label_background_fill="transparent",
        block_label_text_color="*neutral_700",
        block_info_text_color="*neutral_500",
        block_info_text_size="*text_xs",
    )


CSS = """
.gradio-container { max-width: 1280px !important; width: 100% !important; margin: 0 auto !important; padding-top: 0 !important; }
.gradio-container > .main { width: 100% !important; max-width: none !important; }
footer, .nav-holder { display: none !important; }  /* our own top bar replaces Gradio's page navigation */

/* top bar */
.ps-topbar { display: flex; align-items: center; gap: 28px; padding: 14px 4px 12px; margin-bottom: 8px;
  border-bottom: 1px solid #e4e7ee; }
.ps-brand { display: flex; align-items: center; gap: 10px; font-weight: 700; font-size: 18px; color: #1e1b4b !important;
  text-decoration: none !important; }
.ps-logo { width: 30px; height: 30px; border-radius: 8px; background: linear-gradient(135deg, #6366f1, #8b5cf6);
  display: inline-flex; align-items: center; justify-content: center; color: white; font-size: 15px; }
.ps-nav { display: flex; gap: 4px; }
.ps-nav a { padding: 7px 14px; border-radius: 8px; color: #475569 !important; text-decoration: none !important; font-weight: 500; }
.ps-nav a:hover { background: #eef0f7; }
.ps-nav a.active { background: #e0e7ff; color: #3730a3 !important; }
.ps-tagline { margin-left: auto; color: #64748b; font-size: 13px; }

/* page headers */
.ps-page-head { display: flex; align-items: flex-end; justify-content: space-between; gap: 16px; margin: 10px 0 6px; }
.ps-page-title, .ps-run-title h1 { font-size: 24px !important; font-weight: 700 !important; margin: 0 !important; color: #0f172a; }
.ps-page-sub { color: #64748b; margin: 4px 0 0 !important; font-size: 14px; }
.ps-cta { display: inline-block; background: #4f46e5; color: white !important; padding: 9px 18px; border-radius: 10px;
  font-weight: 600; text-decoration: none !important; white-space: nowrap; }
.ps-cta:hover { background: #4338ca; }

/* cards */
.ps-card { background: white !important; border: 1px solid #e4e7ee !important; border-radius: 14px !important;
  padding: 16px 18px !important; box-shadow: 0 1px 2px rgba(15, 23, 42, .04) !important; margin-bottom: 14px; }
.gr-group.ps-card > .gr-group.ps-card { border: none !important; padding: 0 !important; box-shadow: none !important; margin: 0 !important; }
.ps-card .styler { background: transparent !important; --layout-gap: 12px !important; gap: 12px; }
.ps-card .form, .ps-card .block { background: white !important; border: none !important; }
.ps-card .form { gap: 12px !important; }
.ps-card .block.padded { padding: 6px 2px !important; }
.ps-card-title { font-size: 15px !important; font-weight: 650 !important; margin: 0 0 6px !important; color: #1e293b; }
.ps-method-note p { color: #64748b; font-size: 13px; margin: 0 !important; }
.ps-upload-note { font-size: 13px; }
.ps-advanced { margin-top: 8px; }
.ps-sidebar { position: sticky; top: 12px; align-self: flex-start; }
.ps-invalid .block-info, .ps-invalid span[data-testid="block-info"] + div, .ps-invalid .info { color: #b91c1c !important; }
.ps-invalid input, .ps-invalid textarea { border-color: #f87171 !important; }

/* status pills */
.ps-pill { display: inline-block; padding: 3px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; line-height: 1.4;
  white-space: nowrap; }
.ps-queued { background: #f1f5f9; color: #475569; }
.ps-running { background: #e0e7ff; color: #3730a3; }
.ps-succeeded { background: #dcfce7; color: #166534; }
.ps-failed { background: #fee2e2; color: #991b1b; }
.ps-cancelled { background: #fef3c7; color: #92400e; }

/* progress bars */
.ps-bar { height: 8px; background: #eef0f5; border-radius: 99px; overflow: hidden; min-width: 90px; }
.ps-bar > div { height: 100%; background: #6366f1; border-radius: 99px; transition: width .6s ease; }
.ps-bar-succeeded > div { background: #22c55e; }
.ps-bar-failed > div { background: #ef4444; }
.ps-bar-cancelled > div { background: #f59e0b; }
.ps-bar-succeeded > div, .ps-bar-failed > div, .ps-bar-cancelled > div { transition: none; }  /* a finished bar is drawn whole, not grown */
.ps-indeterminate > div { width: 30% !important; animation: ps-slide 1.4s ease-in-out infinite; }
@keyframes ps-slide { 0% { transform: translateX(-100%); } 100% { transform: translateX(340%); } }
.ps-sub { color: #64748b; font-size: 12px; margin-top: 3px; }
.ps-muted { color: #94a3b8; }

/* tiles */
.ps-tiles { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px; margin: 8px 0 6px; }
.ps-tile { background: white; border: 1px solid #e4e7ee; border-radius: 12px; padding: 12px 16px; }
.ps-tile-value { font-size: 22px; font-weight: 700; color: #0f172a; font-variant-numeric: tabular-nums; }
.ps-tile-label { font-size: 12px; color: #64748b; text-transform: uppercase; letter-spacing: .04em; margin-top: 2px; }
.ps-tile-running .ps-tile-value { color: #4f46e5; }
.ps-tile-succeeded .ps-tile-value { color: #16a34a; }
.ps-tile-failed .ps-tile-value { color: #dc2626; }

/* runs table */
.ps-runs { width: 100%; border-collapse: separate; border-spacing: 0; background: white; border: 1px solid #e4e7ee;
  border-radius: 14px; overflow: hidden; font-size: 14px; }
.ps-runs th { text-align: left; font-size: 12px; font-weight: 600; color: #64748b; text-transform: uppercase; letter-spacing: .04em;
  padding: 10px 14px; background: #f8fafc; border-bottom: 1px solid #e4e7ee; }
.ps-runs td { padding: 12px 14px; border-bottom: 1px solid #f1f5f9; vertical-align: middle; color: #1e293b; }
.ps-runs tr:last-child td { border-bottom: none; }
.ps-run-row { cursor: pointer; }
.ps-run-row:hover td { background: #f8f9ff; }
.ps-run-name a { font-weight: 600; color: #1e1b4b !important; text-decoration: none !important; }
.ps-col-progress { width: 170px; }
.ps-loss { display: flex; align-items: center; gap: 10px; font-variant-numeric: tabular-nums; }
.ps-spark { color: #6366f1; flex: none; }
.ps-actions { white-space: nowrap; text-align: right; }
.ps-act { display: inline-block; padding: 4px 10px; margin-left: 4px; border-radius: 7px; border: 1px solid #e2e8f0; background: white;
  color: #334155 !important; font-size: 13px; text-decoration: none !important; cursor: pointer; line-height: 1.4; }
.ps-act:hover { background: #f1f5f9; }
.ps-act-warn { color: #b45309 !important; border-color: #fcd34d; }
.ps-act-danger { color: #b91c1c !important; border-color: #fecaca; }
.ps-empty { text-align: center; padding: 56px 16px; background: white; border: 1px dashed #cbd5e1; border-radius: 14px; color: #64748b; }
.ps-empty p { margin-bottom: 14px !important; font-size: 15px; }
.ps-segmented { margin: 6px 0 4px; }
.ps-confirm { background: #fef2f2 !important; border: 1px solid #fecaca !important; border-radius: 12px !important; padding: 10px 14px !important;
  align-items: center !important; }
.ps-confirm-text { color: #7f1d1d; font-weight: 500; }

/* summary (new run) */
.ps-estimate { position: relative; display: flex; flex-direction: column; gap: 14px; padding-top: 4px; }
.ps-est-badge { align-self: flex-start; font-size: 11px; font-weight: 600; color: #92400e; background: #fef3c7; padding: 2px 8px;
  border-radius: 999px; text-transform: uppercase; letter-spacing: .04em; }
.ps-est-label { font-size: 12px; color: #64748b; text-transform: uppercase; letter-spacing: .04em; }
.ps-est-value { font-size: 26px; font-weight: 700; color: #0f172a; font-variant-numeric: tabular-nums; }
.ps-est-notes { margin: 0 !important; padding-left: 18px !important; color: #64748b; font-size: 12px; }
#ps-start { margin-top: 12px; }

/* callouts */
.ps-callout { border-radius: 12px; padding: 12px 16px; margin: 6px 0; border: 1px solid; font-size: 14px; }
.ps-callout strong { display: block; }
.ps-callout-info { background: #eef2ff; border-color: #c7d2fe; color: #312e81; }
.ps-callout-success { background: #f0fdf4; border-color: #bbf7d0; color: #14532d; }
.ps-callout-warning { background: #fffbeb; border-color: #fde68a; color: #78350f; }
.ps-callout-error { background: #fef2f2; border-color: #fecaca; color: #7f1d1d; }
.ps-problems ul { margin: 6px 0 0 !important; padding-left: 18px !important; }
.ps-problems li { margin: 2px 0; }
.ps-hint { margin-top: 6px; }

/* run page */
.ps-run-title { display: flex; align-items: center; gap: 12px; }
.ps-run-top { align-items: center !important; gap: 10px !important; }
.ps-picker { align-items: flex-end !important; max-width: 760px; }
.ps-run-top .ps-run-action, .ps-picker .ps-run-action { white-space: nowrap; flex: none !important; width: auto !important; padding: 8px 16px !important; }
.ps-progress { margin: 6px 0 4px; }
.ps-progress .ps-bar { height: 10px; }
.ps-progress .ps-sub { font-size: 13px; margin-top: 6px; }
.ps-chart-card { padding: 8px 10px !important; }
.ps-config { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 16px; }
.ps-config h4 { margin: 0 0 6px !important; font-size: 13px; color: #475569; text-transform: uppercase; letter-spacing: .04em; }
.ps-kv { width: 100%; border-collapse: collapse; font-size: 13px; }
.ps-kv th { text-align: left; font-weight: 500; color: #475569; padding: 5px 8px 5px 0; border-bottom: 1px solid #f1f5f9;
  font-family: var(--font-mono); font-size: 12px; white-space: nowrap; vertical-align: top; }
.ps-kv th, .ps-kv td { border: none !important; border-bottom: 1px solid #f1f5f9 !important; background: none !important; }
.ps-kv td { padding: 5px 0; color: #0f172a; word-break: break-word; font-weight: 600; }
.ps-kv td.ps-default { color: #64748b; font-weight: 400; }
.ps-log textarea { font-family: var(--font-mono) !important; font-size: 12px !important; background: #0f172a !important;
  color: #e2e8f0 !important; }
@media (max-width: 900px) { .ps-tiles, .ps-config { grid-template-columns: repeat(2, minmax(0, 1fr)); } .ps-tagline { display: none; } }
"""
