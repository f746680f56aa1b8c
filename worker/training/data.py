"""Training data: turn checked rows into token ids with loss labels, split, batch.

Reading and checking the rows happens before any model is loaded, in app.datasets (torch-free, shared
with the web process); this module takes its `Rows`. The phases, in the order run_training calls them:

2. `tokenize(rows, tokenizer, ...)`: chat rows go through the tokenizer's chat template; prompt and
   completion are concatenated as written. With completions-only training, tokens outside the assistant
   turns / the completion get label -100 (no loss). EOS is appended when the text does not already end
   with it; examples longer than max_seq_length are cut (and then keep no EOS, since they did not end).
3. `split(examples, eval_fraction, seed)`: a fixed-seed held-out set for the eval loss.
4. `micro_batch(...)` + `collate(...)`: the n-th micro-batch of the run is a pure function of (n, seed),
   so a resumed run sees exactly the batches the interrupted one would have seen.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from app.datasets import DatasetError, Rows

from .errors import TrainingError

IGNORE_INDEX = -100  # label of tokens that carry no loss (the value torch's cross_entropy skips)
MAX_EVAL_EXAMPLES = 500  # eval runs often: past this it costs more than it tells

# Used only when a model's tokenizer has no chat template of its own; it is saved with the adapter's
# tokenizer so that inference formats conversations the same way.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


# ------------------------------------------------------------------------------------------- 1. rows


def read_rows(source: str, path: str | None, fmt: str = "auto") -> Rows:
    """app.datasets.read_rows with its DatasetError turned into the trainer's TrainingError."""
    from app.datasets import read_rows as read

    try:
        return read(source, path, fmt)
    except DatasetError as exc:
        raise TrainingError(exc.message, hint=exc.hint) from exc


# ------------------------------------------------------------------------------------------ 2. tokens


@dataclass(frozen=True)
class Example:
    """One tokenized training example; labels are input_ids with IGNORE_INDEX where there is no loss."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class TokenStats:
    examples: int = 0
    truncated: int = 0
    dropped: int = 0  # no token left to learn from (prompt longer than max_seq_length)
    tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def summary(self, max_len: int) -> str:
        mean = self.tokens / max(self.examples, 1)
        return (
            f"{self.examples} examples, {mean:.0f} tokens on average (longest {max(self.lengths, default=0)}); "
            f"{self.truncated} cut at max_seq_length={max_len}, {self.dropped} dropped with nothing to learn"
        )


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a template-less tokenizer the studio's plain one; True if it had to (worth a log line)."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _chat_text(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (with their end marker).

    A turn's span runs from the end of the conversation rendered up to it with a generation prompt to
    the end of the conversation rendered through it. Templates that rewrite earlier turns break that
    prefix property; then the span is the message text itself, found in the rendering.
    """
    text = _render(tokenizer, messages).rstrip()
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
            through = _render(tokenizer, messages[: i + 1]).rstrip()
        except Exception:  # a template that refuses a partial conversation
            before, through = "", ""
        if before and text.startswith(before) and text.startswith(through) and len(through) > len(before):
            spans.append((len(before), len(through)))
            continue
        start = text.find(message["content"], spans[-1][1] if spans else 0)
        if start >= 0:
            spans.append((start, start + len(message["content"])))
    return text, spans


def _encode(tokenizer: Any, text: str, spans: list[tuple[int, int]], special: bool) -> tuple[list[int], list[bool]]:
    """Token ids of `text` and, per token, whether it starts inside one of `spans` (is trained)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        starts = [s for s, _ in enc["offset_mapping"]]
        return list(enc["input_ids"]), [any(a <= s < b for a, b in spans) for s in starts]
    ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])  # slow tokenizer: count by prefixes
    trained = [False] * len(ids)
    for a, b in spans:
        lo = len(tokenizer(text[:a], add_special_tokens=special)["input_ids"])
        hi = len(tokenizer(text[:b], add_special_tokens=special)["input_ids"])
        for j in range(lo, min(hi, len(ids))):
            trained[j] = True
    return ids, trained


def encode_row(row: dict[str, Any], fmt: str, tokenizer: Any, max_len: int, completions_only: bool) -> tuple[Example, bool]:
    """(example, was it truncated) for one checked row."""
    if fmt == "chat":
        text, spans = _chat_text(tokenizer, row["messages"])
        ids, trained = _encode(tokenizer, text, spans, special=False)  # the template writes BOS itself
        ends_trained = row["messages"][-1]["role"] == "assistant"
    elif fmt == "prompt_completion":
        text = row["prompt"] + row["completion"]
        ids, trained = _encode(tokenizer, text, [(len(row["prompt"]), len(text))], special=True)
        ends_trained = True
    else:
        ids, trained = _encode(tokenizer, row["text"], [(0, len(row["text"]))], special=True)
        ends_trained = True
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
        trained.append(ends_trained)
    truncated = len(ids) > max_len
    ids, trained = ids[:max_len], trained[:max_len]
    labels = [t if (keep or not completions_only) else IGNORE_INDEX for t, keep in zip(ids, trained)]
    return Example(ids, labels), truncated


def tokenize(rows: Rows, tokenizer: Any, max_len: int, completions_only: bool) -> tuple[list[Example], TokenStats]:
    """Tokenize every row; TrainingError names the line whose template fails or if nothing is left."""
    examples: list[Example] = []
    stats = TokenStats()
    for row, line in zip(rows.rows, rows.lines):
        try:
            example, truncated = encode_row(row, rows.format, tokenizer, max_len, completions_only)
        except Exception as exc:  # jinja errors from the model's own template ("roles must alternate")
            raise TrainingError(
                f"The dataset {rows.source}, line {line}: the model's chat template rejected this conversation: {exc}",
                hint="Reorder the messages as that model expects (often system, then alternating user/assistant).",
            ) from exc
        stats.truncated += truncated
        if all(label == IGNORE_INDEX for label in example.labels[1:]):  # position 0 is never predicted
            stats.dropped += 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.tokens += len(example.input_ids)
        stats.lengths.append(len(example.input_ids))
    if not examples:
        raise TrainingError(
            f"None of the {len(rows.rows)} examples in {rows.source} has a token to learn from within "
            f"max_seq_length={max_len}: the prompts are longer than that.",
            hint="Raise training.max_seq_length or shorten the prompts.",
        )
    return examples, stats


# ------------------------------------------------------------------------------------------- 3. split


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval): a seeded shuffle holds out eval_fraction (at least one, at most MAX_EVAL_EXAMPLES)."""
    n = len(examples)
    if eval_fraction <= 0 or n < 2:
        return list(examples), []
    n_eval = min(max(1, round(n * eval_fraction)), n - 1, MAX_EVAL_EXAMPLES)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [examples[i] for i in sorted(held)]


# ----------------------------------------------------------------------------------------- 4. batches


def batches_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


@functools.lru_cache(maxsize=4)
def epoch_order(n_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    """The example order of one epoch: a function of (seed, epoch) alone, so resuming needs no saved order."""
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def micro_batch(examples: list[Example], batch_size: int, seed: int, index: int) -> list[Example]:
    """The index-th micro-batch of the run (epochs follow each other; the last batch of one may be short)."""
    per_epoch = batches_per_epoch(len(examples), batch_size)
    epoch, b = divmod(index, per_epoch)
    order = epoch_order(len(examples), seed, epoch)
    return [examples[i] for i in order[b * batch_size : (b + 1) * batch_size]]


def collate(batch: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids, attention_mask, labels (IGNORE_INDEX on padding)."""
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
