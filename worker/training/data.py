"""Training data: turn checked rows into token ids with loss labels, split, pack, batch.

Reading and checking the rows happens before any model is loaded, in app.datasets (torch-free, shared
with the web process); this module takes its `Rows`. The phases, in the order the trainer calls them
(1 is reading, in app.datasets):

2. `tokenize_for_job(rows, base, job, log)`: app.datasets.tokenization.encode_row, the very function the
   web process's sample inspector calls, over the model folder's tokenizer files, so what was shown
   before Start is what is trained. Chat rows go through the chat template (dataset.template; "auto" is
   the tokenizer's own, else the built-in "plain", which is then saved with the adapter's tokenizer);
   with completions-only training only assistant turns / completions keep their labels; EOS ends each
   example (trained); longer examples are cut at max_seq_length.
3. `split(examples, eval_fraction, seed)`: a fixed-seed held-out set for the eval loss.
4. `pack(examples, max_len, seed)` (training.packing): the training examples, in a seeded order, laid
   end to end into sequences of at most max_seq_length; each keeps its rows' lengths (`segments`).
5. `micro_batch(...)` + `collate(...)`: the n-th micro-batch of the run is a pure function of (n, seed),
   so a resumed run sees exactly the batches the interrupted one would have seen. A packed batch carries
   position_ids that restart at 0 for every row and no 2D attention mask: the model then builds a causal
   mask per row from the position_ids (transformers' packed-sequence attention), so no token attends
   across a row boundary (loop.check_packed_attention verifies that on the run's model); and the first
   token of each row gets no label, so none is predicted from the previous row.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.datasets import DatasetError, Rows
from app.datasets.templates import resolve_template
from app.datasets.tokenization import IGNORE_INDEX, TextTokenizer, TokenSettings, pack_plan, template_warnings, tokenize_rows

from .errors import TrainingError

MAX_EVAL_EXAMPLES = 500  # eval runs often: past this it costs more than it tells
__all__ = ["IGNORE_INDEX", "Example", "Rows", "TokenStats", "collate", "micro_batch", "pack", "split", "tokenize", "tokenize_for_job"]


# ------------------------------------------------------------------------------------------ 2. tokens


@dataclass(frozen=True)
class Example:
    """One tokenized training example (or several packed); labels are input_ids with IGNORE_INDEX where there is no loss."""

    input_ids: list[int]
    labels: list[int]
    segments: tuple[int, ...] | None = None  # packed: the lengths of the rows laid end to end


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


def text_tokenizer(tokenizer: Any, base_model: str) -> TextTokenizer:
    """The torch-free tokenizer over the same files the web process reads; the Rust one inside `tokenizer` if none."""
    from app.datasets.tokenizer_files import hub_tokenizer_folder, load_tokenizer

    folder = Path(str(getattr(tokenizer, "name_or_path", "") or base_model)).expanduser()
    try:
        if (folder / "tokenizer.json").is_file():
            return load_tokenizer(folder)
        if base_model != "demo" and not folder.exists():
            return load_tokenizer(hub_tokenizer_folder(base_model))
    except DatasetError:
        pass
    return TextTokenizer.from_transformers(tokenizer)


def tokenize(rows: Rows, tok: TextTokenizer, settings: TokenSettings) -> tuple[list[Example], TokenStats]:
    """Tokenize every row (app.datasets.tokenization); TrainingError names a refused row, or says nothing is left."""
    try:
        done = tokenize_rows(rows, tok, settings)
    except DatasetError as exc:
        raise TrainingError(exc.message, hint=exc.hint) from exc
    examples = [Example(e.input_ids, e.labels) for e in done.examples]
    if not examples:
        raise TrainingError(
            f"None of the {len(rows.rows)} examples in {rows.source} has a token to learn from within "
            f"max_seq_length={settings.max_seq_length}: the prompts are longer than that.",
            hint="Raise training.max_seq_length or shorten the prompts.",
        )
    lengths = [len(e.input_ids) for e in examples]
    return examples, TokenStats(len(examples), done.truncated, done.dropped, sum(lengths), lengths)


def tokenize_for_job(rows: Rows, base: Any, job: Any, log: Callable[[str], None]) -> tuple[list[Example], TokenStats]:
    """Tokenize the job's rows as the sample inspector showed them; a built-in template is saved with the tokenizer."""
    settings = TokenSettings.from_spec(job.to_dict())
    tok = text_tokenizer(base.tokenizer, job.base_model)
    if rows.format == "chat":
        template = resolve_template(settings.template, tok.chat_template)
        log(f"chat template: {template.label}")
        for note in template_warnings(template, tok):
            log(note if template.fallback and note.startswith("using ") else f"warning: {note}")
        if template.name != "tokenizer":  # inference must format conversations the same way
            base.tokenizer.chat_template = template.source
    return tokenize(rows, tok, settings)


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


# -------------------------------------------------------------------------------------------- 4. pack


def pack(examples: list[Example], max_len: int, seed: int) -> list[Example]:
    """Lay the examples end to end, in a seeded order, into sequences of at most max_len tokens (pack_plan).

    Rows are never split. Labels of each row's first token are dropped: it must not be predicted from
    the previous row (alone, position 0 is never predicted either, so the loss equals the unpacked one).
    """
    packs = []
    for members in pack_plan([len(e.input_ids) for e in examples], max_len, seed):
        rows = [examples[i] for i in members]
        ids = [t for e in rows for t in e.input_ids]
        labels = [label for e in rows for label in (IGNORE_INDEX, *e.labels[1:])]
        packs.append(Example(ids, labels, tuple(len(e.input_ids) for e in rows)))
    return packs


# ----------------------------------------------------------------------------------------- 5. batches


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


def position_ids(segments: tuple[int, ...], width: int) -> list[int]:
    """0, 1, ... restarting at every row; the padding after the last row counts from 0 as a row of its own."""
    out = [p for n in segments for p in range(n)]
    return out + list(range(width - len(out)))


def collate(batch: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids, attention_mask (1 = a real token), labels (IGNORE_INDEX on padding).

    A batch of packed examples also gets position_ids (restarting per row); the trainer then gives the
    model position_ids instead of the 2D mask, so attention stays within each row (see token_loss).
    """
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    out = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    if any(e.segments is not None for e in batch):
        positions = [position_ids(e.segments or (len(e.input_ids),), width) for e in batch]
        out["position_ids"] = torch.tensor(positions, dtype=torch.long)
    return out
