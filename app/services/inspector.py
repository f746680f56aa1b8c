"""The sample inspector, before Start: one row exactly as the trainer will see it, and the token lengths of all rows.

Torch-free (web process). It calls the same `app.datasets.tokenization.encode_row` the trainer calls, with
the tokenizer files of the job's base model (app.datasets.tokenizer_files), so the tokens and labels shown
are the ones trained. Every failure a person can fix is a DatasetError(message, hint).

    inspect_sample(spec, row)  -> SampleView   spec is a job spec dict: base_model, dataset{...}, training{...}
    length_report(spec)        -> LengthReport
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from app.datasets import DatasetError, Rows
from app.datasets.load import read_rows_window
from app.datasets.templates import resolve_template
from app.datasets.tokenization import (
    IGNORE_INDEX,
    TextTokenizer,
    TokenSettings,
    encode_row,
    pack_plan,
    template_warnings,
    tokenize_rows,
)
from app.datasets.tokenizer_files import tokenizer_for_model
from app.jobspec import TrainingSettings
from app.settings import Settings, get_settings

MAX_REPORT_ROWS = 10_000  # the length report tokenizes at most this many rows (it says so when it stops early)
HISTOGRAM_BINS = 12


@dataclass(frozen=True)
class TokenView:
    id: int
    piece: str  # the token's text as it appears in the rendered text ("" for an appended EOS and a continuation)
    trained: bool  # the label is kept: the model learns to predict this token
    special: bool  # a special token of the tokenizer (<|im_start|>, EOS, ...)
    eos: bool
    continuation: bool = False  # another byte of the character the token before began (byte-level BPE splits "日" in 3)


@dataclass
class SampleView:
    """One row as the trainer sees it."""

    source: str  # the dataset, in words
    row: int  # 0-based index asked for
    line: int  # its line / row number in the file
    rows: int  # how many rows the dataset has
    format: str  # chat / prompt_completion / text
    template: str | None  # the chat template used, in words (None for non-chat data)
    text: str  # the exact rendered text
    tokens: list[TokenView]
    length: int  # tokens before the cut at max_seq_length
    max_seq_length: int
    truncated: bool
    learnable: bool  # False: the row is dropped (nothing to learn within max_seq_length)
    completions_only: bool
    packing: bool
    warnings: list[str] = field(default_factory=list)
    cut_at: int | None = None  # when truncated: where in `text` the kept tokens end (the rest is not trained on)

    @property
    def trained_tokens(self) -> int:
        return sum(t.trained for t in self.tokens)

    @property
    def masked_tokens(self) -> int:
        return len(self.tokens) - self.trained_tokens


@dataclass(frozen=True)
class Bin:
    low: int  # token lengths low..high inclusive
    high: int
    count: int


@dataclass
class LengthReport:
    """Token lengths of the rows against max_seq_length."""

    source: str
    rows: int  # rows measured
    total_rows: int  # rows in the dataset
    max_seq_length: int
    bins: list[Bin]
    truncated: int  # longer than max_seq_length: cut
    dropped: int  # nothing left to learn from after the cut: left out of training
    longest: int
    mean: float
    packing: bool
    packed_sequences: int | None = None  # with packing: how many sequences of max_seq_length the learnable rows fill
    warnings: list[str] = field(default_factory=list)


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else get_settings()


def _dataset_section(spec: dict[str, Any], settings: Settings | None) -> dict[str, Any]:
    """The spec's dataset section; a stored dataset gets its file, format and mapping from the database."""
    dataset = dict(spec.get("dataset") or {"source": "demo"})
    if dataset.get("source") in ("file", "jsonl"):  # a path on the server: STUDIO_DATASET_ROOTS decides (app/datasets/roots.py)
        from app.datasets.roots import check_server_path

        check_server_path(dataset.get("path") or "", _settings(settings))
    if dataset.get("source") != "stored":
        return dataset
    from app.db.session import session_scope
    from app.services.datasets import DatasetNotFound, resolve_spec

    try:
        with session_scope(_settings(settings)) as session:
            return resolve_spec(session, dataset)
    except DatasetNotFound as exc:
        raise DatasetError(f"There is no stored dataset {dataset.get('dataset_id')}.", hint="Pick a dataset from the Datasets page.") from exc


@functools.lru_cache(maxsize=4)
def _cached_rows(source: str, path: str | None, fmt: str, mapping: str, start: int, stop: int, _stamp: tuple[float, int]) -> tuple[Rows, int]:
    return read_rows_window(source, path, fmt, json.loads(mapping) or None, start, stop)


def _read(spec: dict[str, Any], settings: Settings | None, start: int = 0, stop: int = MAX_REPORT_ROWS) -> tuple[Rows, int]:
    """Rows start..stop of the checked dataset, and how many it has (every row is checked, streaming; only the window is kept).

    Cached while the file is unchanged: showing row after row of the first MAX_REPORT_ROWS reads it once."""
    dataset = _dataset_section(spec, settings)
    source, path = dataset.get("source", "demo"), dataset.get("path")
    file = Path(path) if source != "demo" and path else None
    stamp = (file.stat().st_mtime, file.stat().st_size) if file is not None and file.is_file() else (0.0, 0)
    mapping = json.dumps(dataset.get("mapping") or {}, sort_keys=True)
    return _cached_rows(source, path, dataset.get("format") or "auto", mapping, start, stop, stamp)


def _tokenizer(spec: dict[str, Any], settings: Settings | None) -> TextTokenizer:
    base = spec.get("base_model") or "demo"
    return tokenizer_for_model(str(base), _settings(settings).data_dir)


def _token_settings(spec: dict[str, Any]) -> TokenSettings:
    try:
        return TokenSettings.from_spec(spec)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"The job's dataset/training settings cannot be read: {exc}", hint="Fix max_seq_length.") from exc


def inspect_sample(spec: dict[str, Any], row: int, settings: Settings | None = None) -> SampleView:
    """Row `row` (0-based) of the spec's dataset, rendered and tokenized as the trainer will."""
    start = 0 if row < MAX_REPORT_ROWS else row  # past the report's rows: stream to that one row only
    rows, total = _read(spec, settings, start, MAX_REPORT_ROWS if start == 0 else row + 1)
    if not 0 <= row < total:
        raise DatasetError(f"Row {row + 1} does not exist: {rows.source} has {total} rows.", hint=f"Pick a row from 1 to {total}.")
    at = row - start
    tok = _tokenizer(spec, settings)
    token_settings = _token_settings(spec)
    template = resolve_template(token_settings.template, tok.chat_template)
    try:
        enc = encode_row(rows.rows[at], rows.format, tok, template, token_settings)
    except TemplateError as exc:  # a template that refuses the conversation (raise_exception, ...)
        raise DatasetError(
            f"{rows.source}, line {rows.lines[at]}: {template.label} rejected this conversation: {exc}",
            hint="Reorder the messages as that template expects, or choose another dataset.template.",
        ) from exc
    tokens = _token_views(enc, tok)
    warnings = template_warnings(template, tok) if rows.format == "chat" else []
    if enc.truncated:
        warnings.append(f"this row has {enc.full_length} tokens: it is cut at max_seq_length={token_settings.max_seq_length} and keeps no EOS")
    if not enc.learnable:
        warnings.append("after the cut no token of this row is trained: it is left out of training")
    training = spec.get("training") or {}
    return SampleView(
        source=rows.source, row=row, line=rows.lines[at], rows=total, format=rows.format,
        template=template.label if rows.format == "chat" else None, text=enc.text, tokens=tokens, length=enc.full_length,
        max_seq_length=token_settings.max_seq_length, truncated=enc.truncated, learnable=enc.learnable,
        cut_at=max((b for _, b in enc.offsets), default=0) if enc.truncated else None,
        completions_only=token_settings.completions_only, packing=bool(training.get("packing", False)), warnings=rows.notes + warnings,
    )


def _token_views(enc: Any, tok: TextTokenizer) -> list[TokenView]:
    """Each token with its text; tokens that share one character's span (its bytes) show it once."""
    views: list[TokenView] = []
    previous = None
    for i, label, (a, b) in zip(enc.input_ids, enc.labels, enc.offsets):
        continuation = b > a and (a, b) == previous
        piece = "" if continuation else enc.text[a:b] if b > a else ("" if i == tok.eos_id else tok.piece(i))
        views.append(TokenView(i, piece, label != IGNORE_INDEX, tok.is_special(i), i == tok.eos_id, continuation))
        previous = (a, b)
    return views


def histogram(lengths: list[int], max_len: int, bins: int = HISTOGRAM_BINS) -> list[Bin]:
    """Equal-width bins from 1 to max(longest, max_len), so the max_seq_length line always falls on the chart."""
    if not lengths:
        return []
    top = max(max(lengths), max_len)
    width = max(1, math.ceil(top / bins))
    counts = [0] * math.ceil(top / width)
    for n in lengths:
        counts[min((max(n, 1) - 1) // width, len(counts) - 1)] += 1
    return [Bin(k * width + 1, (k + 1) * width, c) for k, c in enumerate(counts)]


_REPORTS: dict[tuple[Any, ...], tuple[Rows, TextTokenizer, LengthReport]] = {}  # the last few reports (the page asks again per row)
KEEP_REPORTS = 8


def length_report(spec: dict[str, Any], settings: Settings | None = None) -> LengthReport:
    """Token lengths of the spec's rows (the first MAX_REPORT_ROWS), with how many are cut or dropped.

    Remembered while the rows (file version) and the tokenizer are the ones it was made from, so showing row
    after row does not tokenize the whole dataset again."""
    rows, total = _read(spec, settings)
    tok = _tokenizer(spec, settings)
    token_settings = _token_settings(spec)
    training = spec.get("training") or {}
    packing = bool(training.get("packing", False))
    seed = int(training.get("seed", TrainingSettings().seed))
    key = (id(rows), id(tok), token_settings, packing, seed)
    if key in _REPORTS and _REPORTS[key][0] is rows and _REPORTS[key][1] is tok:
        return _REPORTS[key][2]
    report = _measure(rows, total, tok, token_settings, packing, seed)
    _REPORTS[key] = (rows, tok, report)
    while len(_REPORTS) > KEEP_REPORTS:
        _REPORTS.pop(next(iter(_REPORTS)))
    return report


def _measure(rows: Rows, total: int, tok: TextTokenizer, token_settings: TokenSettings, packing: bool, seed: int) -> LengthReport:
    done = tokenize_rows(rows, tok, token_settings, limit=MAX_REPORT_ROWS)
    lengths, max_len = done.lengths, token_settings.max_seq_length
    warnings = list(done.warnings)
    if total > len(lengths):
        warnings.append(f"measured the first {len(lengths):,} of {total:,} rows")
    return LengthReport(
        source=rows.source, rows=len(lengths), total_rows=total, max_seq_length=max_len, bins=histogram(lengths, max_len),
        truncated=done.truncated, dropped=done.dropped, longest=max(lengths, default=0),
        mean=sum(lengths) / max(len(lengths), 1), packing=packing,
        packed_sequences=len(pack_plan([len(e.input_ids) for e in done.examples], max_len, seed)) if packing else None, warnings=warnings,
    )
