"""Rows -> token ids with loss labels, torch-free: the one code path shared by the sample inspector and the trainer.

The web process shows a sample before Start and the worker trains on it; both call `encode_row` with a
`TextTokenizer` (the `tokenizers` library over the model folder's tokenizer.json + tokenizer_config.json),
so what the inspector shows is what the trainer trains, token for token.

    chat               rendered with the chat template (templates.py); encoded without added special tokens
                       (the template writes BOS itself); with completions-only training, only the assistant
                       turns (with their end-of-turn marker) keep their labels
    prompt_completion  prompt + completion as written, encoded with the tokenizer's special tokens (BOS);
                       only the completion is trained with completions-only training
    text               the text, all trained

EOS is appended (and trained) when the sequence does not already end with it, never twice. Longer
examples are cut at max_seq_length (then they keep no EOS, since they did not end). An example whose
labels are all masked after the cut has nothing to learn from and is dropped.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from .rows import DatasetError, Rows
from .templates import (
    REQUIRED_MARKERS,
    USES_BOS,
    USES_EOS,
    ChatTemplate,
    fold_system,
    render_with_spans,
    resolve_template,
    with_system_prompt,
)

IGNORE_INDEX = -100  # label of tokens that carry no loss (the value torch's cross_entropy skips)
SPECIAL_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


@dataclass
class TextTokenizer:
    """A model's tokenizer as the `tokenizers` library sees it, plus what tokenizer_config.json adds."""

    core: Any  # tokenizers.Tokenizer
    special: dict[str, str] = field(default_factory=dict)  # bos_token / eos_token / pad_token / unk_token -> text
    chat_template: str | None = None
    source: str = "tokenizer"

    def __post_init__(self) -> None:
        self.core.no_padding()
        self.core.no_truncation()
        added = self.core.get_added_tokens_decoder()
        self.added_ids = {t.content: i for i, t in added.items()}  # never split: one token each, special or not
        self.special_ids = {t.content: i for i, t in added.items() if t.special}

    @classmethod
    def from_folder(cls, folder: Path) -> TextTokenizer:
        """Load tokenizer.json and the special tokens / chat template saved beside it (transformers' layout)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise DatasetError(
                f"The model folder {folder} has no tokenizer.json.",
                hint="Save the model's tokenizer with a recent transformers (it writes tokenizer.json), or choose another model.",
            )
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
            if (folder / name).is_file():
                config.update(json.loads((folder / name).read_text(encoding="utf-8")))
        template = config.get("chat_template")
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif (folder / "chat_template.json").is_file():
            template = json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        special = {name: text for name in SPECIAL_NAMES if (text := _token_text(config.get(name)))}
        return cls(
            Tokenizer.from_file(str(file)), special, template or None, source=str(folder)
        )

    @classmethod
    def from_transformers(cls, tokenizer: Any) -> TextTokenizer:
        """The Rust tokenizer inside a transformers fast tokenizer (for models whose files are not at hand)."""
        import copy

        special = {name: text for name in SPECIAL_NAMES if (text := _token_text(getattr(tokenizer, name, None)))}
        template = getattr(tokenizer, "chat_template", None)
        return cls(copy.deepcopy(tokenizer.backend_tokenizer), special, template if isinstance(template, str) else None,
                   source=str(getattr(tokenizer, "name_or_path", "tokenizer")))

    def token_id(self, name: str) -> int | None:
        text = self.special.get(name)
        return self.core.token_to_id(text) if text is not None else None

    @property
    def eos_id(self) -> int | None:
        return self.token_id("eos_token")

    @property
    def bos_id(self) -> int | None:
        return self.token_id("bos_token")

    def encode(self, text: str, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
        """(ids, character offsets) of `text`; with add_special_tokens, what tokenizer.json's post-processor adds (BOS...).

        Like transformers 5's tokenizers backend, add_bos_token/add_eos_token in tokenizer_config.json change nothing
        (a test checks this against transformers): the post-processor saved in tokenizer.json decides."""
        enc = self.core.encode(text, add_special_tokens=add_special_tokens)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def piece(self, token_id: int) -> str:
        return self.core.id_to_token(token_id) or f"<{token_id}>"

    def is_special(self, token_id: int) -> bool:
        return self.piece(token_id) in self.special_ids


@dataclass(frozen=True)
class TokenSettings:
    """The job settings that decide how rows become tokens (dataset.template/system_prompt, training.*)."""

    max_seq_length: int = 512
    completions_only: bool = True
    template: str = "auto"
    system_prompt: str | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TokenSettings:
        dataset, training = spec.get("dataset") or {}, spec.get("training") or {}
        return cls(
            max_seq_length=int(training.get("max_seq_length", 512)),
            completions_only=bool(training.get("train_on_completions_only", True)),
            template=dataset.get("template") or "auto",
            system_prompt=dataset.get("system_prompt") or None,
        )


@dataclass(frozen=True)
class Encoded:
    """One row as the trainer sees it, with what the inspector shows about it."""

    text: str  # the exact text that was tokenized (EOS appended by id is not in it)
    input_ids: list[int]
    labels: list[int]  # input_ids with IGNORE_INDEX where there is no loss
    offsets: list[tuple[int, int]]  # character span of each token in `text`
    full_length: int  # tokens before the cut at max_seq_length
    truncated: bool

    @property
    def trained(self) -> list[bool]:
        return [label != IGNORE_INDEX for label in self.labels]

    @property
    def learnable(self) -> bool:
        """Any label left to predict (position 0 is never predicted)."""
        return any(label != IGNORE_INDEX for label in self.labels[1:])


def template_warnings(template: ChatTemplate, tok: TextTokenizer) -> list[str]:
    """What goes wrong with this template on this tokenizer: markers it lacks, BOS/EOS it has none of."""
    notes: list[str] = []
    missing = [m for m in REQUIRED_MARKERS.get(template.name, ()) if m not in tok.added_ids]
    if missing:
        notes.append(
            f"{template.label} writes {', '.join(missing)}, which this tokenizer does not have as special tokens: "
            "they are cut into ordinary text pieces. Choose the template of this model's family (or 'auto')."
        )
    if template.name in USES_EOS and tok.eos_id is None:
        notes.append(f"{template.label} ends answers with the EOS token, but this tokenizer has none: the model may not learn to stop.")
    if template.name in USES_BOS and tok.bos_id is None:
        notes.append(f"{template.label} starts with the BOS token, but this tokenizer has none: it is left out.")
    if template.fallback:
        notes.append(f"using {template.label}; it is saved with the adapter so inference formats the same way")
    return notes


def _chat(row: dict[str, Any], tok: TextTokenizer, template: ChatTemplate, system_prompt: str | None) -> tuple[str, list[tuple[int, int]]]:
    messages = with_system_prompt(row["messages"], system_prompt)
    try:
        return render_with_spans(template, messages, tok.special)
    except TemplateError:
        if messages[0]["role"] != "system":
            raise
        return render_with_spans(template, fold_system(messages), tok.special)  # e.g. "system role not supported"


def encode_row(row: dict[str, Any], fmt: str, tok: TextTokenizer, template: ChatTemplate, settings: TokenSettings) -> Encoded:
    """Tokenize one checked row; jinja2.TemplateError when the template refuses the conversation."""
    if fmt == "chat":
        text, spans = _chat(row, tok, template, settings.system_prompt)
        ids, offsets = tok.encode(text, add_special_tokens=False)  # the template writes BOS itself
        ends_trained = row["messages"][-1]["role"] == "assistant"
    elif fmt == "prompt_completion":
        text = row["prompt"] + row["completion"]
        spans = [(len(row["prompt"]), len(text))]
        ids, offsets = tok.encode(text, add_special_tokens=True)
        ends_trained = True
    else:
        text = row["text"]
        spans = [(0, len(text))]
        ids, offsets = tok.encode(text, add_special_tokens=True)
        ends_trained = True
    trained = [any(a <= start < b for a, b in spans) and end > start for start, end in offsets]
    eos = tok.eos_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids, offsets, trained = [*ids, eos], [*offsets, (len(text), len(text))], [*trained, ends_trained]
    elif ids and ids[-1] == eos and ends_trained:
        trained[-1] = True  # the EOS the template wrote ends the answer: learn to stop
    full = len(ids)
    cut = settings.max_seq_length
    labels = [t if (keep or not settings.completions_only) else IGNORE_INDEX for t, keep in zip(ids[:cut], trained[:cut])]
    return Encoded(text, ids[:cut], labels, offsets[:cut], full, full > cut)


@dataclass
class Tokenized:
    """Every row of a dataset, encoded: the learnable ones for training, the rest counted."""

    examples: list[Encoded]  # learnable rows, in row order
    lengths: list[int]  # full token length of every row (before cutting), for the length histogram
    truncated: int = 0
    dropped: int = 0  # no token left to learn from (the prompt fills max_seq_length)
    warnings: list[str] = field(default_factory=list)


def tokenize_rows(rows: Rows, tok: TextTokenizer, settings: TokenSettings, *, limit: int | None = None) -> Tokenized:
    """Encode the rows (the first `limit` of them when given); DatasetError names a row the template refuses."""
    template = resolve_template(settings.template, tok.chat_template)
    out = Tokenized([], [], warnings=template_warnings(template, tok) if rows.format == "chat" else [])
    for row, line in list(zip(rows.rows, rows.lines))[:limit]:
        try:
            enc = encode_row(row, rows.format, tok, template, settings)
        except TemplateError as exc:
            raise DatasetError(
                f"The dataset {rows.source}, line {line}: {template.label} rejected this conversation: {exc}",
                hint="Reorder the messages as that template expects (often system, then alternating user/assistant), "
                "or choose another dataset.template.",
            ) from exc
        out.lengths.append(enc.full_length)
        out.truncated += enc.truncated
        if enc.learnable:
            out.examples.append(enc)
        else:
            out.dropped += 1
    return out


def pack_plan(lengths: list[int], max_len: int, seed: int) -> list[list[int]]:
    """Which rows (indices into `lengths`) share each packed sequence of at most max_len tokens.

    Rows go in a seeded order and are never split: one that does not fit starts the next sequence. A pure
    function of its arguments, so the trainer packs alike on resume and the length report counts what the
    trainer will get.
    """
    order = list(range(len(lengths)))
    random.Random(seed * 7_919 + 1).shuffle(order)
    packs: list[list[int]] = []
    used = 0
    for i in order:
        if not packs or used + lengths[i] > max_len:
            packs.append([])
            used = 0
        packs[-1].append(i)
        used += lengths[i]
    return packs
