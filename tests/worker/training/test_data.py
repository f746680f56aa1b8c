"""worker.training.data: rows -> checked rows -> token ids with loss labels -> split -> batches."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.training import data
from worker.training.data import IGNORE_INDEX
from worker.training.errors import TrainingError

from .conftest import write_jsonl

CHAT = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Greet Anna."},
    {"role": "assistant", "content": "Hello, Anna!"},
    {"role": "user", "content": "Antonym of hot?"},
    {"role": "assistant", "content": "cold"},
]}


def trained_text(tokenizer: Any, example: data.Example) -> str:
    """The text of the tokens that carry loss, in order."""
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def rows_of(tmp_path: Path, rows: list[Any], fmt: str = "auto") -> data.Rows:
    return data.read_rows("jsonl", str(write_jsonl(tmp_path / "d.jsonl", rows)), fmt)


# ------------------------------------------------------------------------------------------ formats


def test_chat_trains_only_the_assistant_turns_and_ends_with_eos(tmp_path, demo_tokenizer):
    rows = rows_of(tmp_path, [CHAT])
    assert rows.format == "chat"
    (example,), stats = data.tokenize(rows, demo_tokenizer, 512, completions_only=True)
    assert example.input_ids[-1] == demo_tokenizer.eos_token_id
    assert trained_text(demo_tokenizer, example) == "Hello, Anna!<|im_end|>cold<|im_end|>"
    assert "Greet Anna" in demo_tokenizer.decode(example.input_ids)
    assert stats.examples == 1 and stats.truncated == 0


def test_chat_without_completion_masking_trains_every_token(tmp_path, demo_tokenizer):
    (example,), _ = data.tokenize(rows_of(tmp_path, [CHAT]), demo_tokenizer, 512, completions_only=False)
    assert example.labels == example.input_ids


def test_prompt_completion_masks_the_prompt(tmp_path, demo_tokenizer):
    rows = rows_of(tmp_path, [{"prompt": "Q: 2 + 2?\nA:", "completion": " 4"}])
    assert rows.format == "prompt_completion"
    (example,), _ = data.tokenize(rows, demo_tokenizer, 512, completions_only=True)
    assert trained_text(demo_tokenizer, example) == " 4<|im_end|>"
    assert demo_tokenizer.decode(example.input_ids) == "Q: 2 + 2?\nA: 4<|im_end|>"


def test_text_trains_everything_and_appends_eos(tmp_path, demo_tokenizer):
    rows = rows_of(tmp_path, [{"text": "The sky is blue."}])
    assert rows.format == "text"
    (example,), _ = data.tokenize(rows, demo_tokenizer, 512, completions_only=True)
    assert example.labels == example.input_ids
    assert demo_tokenizer.decode(example.input_ids) == "The sky is blue.<|im_end|>"


def test_sharegpt_conversations_read_as_chat(tmp_path, demo_tokenizer):
    row = {"conversations": [{"from": "human", "value": "Greet Ben."}, {"from": "gpt", "value": "Hello, Ben!"}]}
    rows = rows_of(tmp_path, [row])
    assert rows.rows[0]["messages"][1] == {"role": "assistant", "content": "Hello, Ben!"}
    (example,), _ = data.tokenize(rows, demo_tokenizer, 512, completions_only=True)
    assert trained_text(demo_tokenizer, example) == "Hello, Ben!<|im_end|>"


def test_truncation_cuts_and_drops_the_eos(tmp_path, demo_tokenizer):
    rows = rows_of(tmp_path, [{"text": "one two three four five six seven eight nine ten " * 4}])
    (example,), stats = data.tokenize(rows, demo_tokenizer, 12, completions_only=True)
    assert len(example.input_ids) == 12 and example.input_ids[-1] != demo_tokenizer.eos_token_id
    assert stats.truncated == 1


def test_examples_with_nothing_left_to_learn_are_dropped_then_refused(tmp_path, demo_tokenizer):
    long_prompt = {"prompt": "word " * 50, "completion": "answer"}
    rows = rows_of(tmp_path, [long_prompt, {"prompt": "Hi", "completion": " there"}])
    examples, stats = data.tokenize(rows, demo_tokenizer, 16, completions_only=True)
    assert len(examples) == 1 and stats.dropped == 1
    with pytest.raises(TrainingError, match="max_seq_length=16") as info:
        data.tokenize(rows_of(tmp_path, [long_prompt]), demo_tokenizer, 16, completions_only=True)
    assert "max_seq_length" in info.value.hint


def test_a_tokenizer_without_chat_template_gets_the_fallback(tmp_path, demo_tokenizer):
    tokenizer = copy.deepcopy(demo_tokenizer)
    tokenizer.chat_template = None
    assert data.ensure_chat_template(tokenizer) is True
    assert data.ensure_chat_template(tokenizer) is False
    (example,), _ = data.tokenize(rows_of(tmp_path, [CHAT]), tokenizer, 512, completions_only=True)
    assert "### User:\nGreet Anna." in tokenizer.decode(example.input_ids)
    assert trained_text(tokenizer, example).replace("\n", "") == "Hello, Anna!<|im_end|>cold<|im_end|>"


class SlowTokenizer:
    """The demo tokenizer seen as a slow one (no offsets): masks must come out the same."""

    is_fast = False

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
        return self.inner(text, add_special_tokens=add_special_tokens)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("row", [CHAT, {"prompt": "Say hi:", "completion": " hi"}], ids=["chat", "prompt_completion"])
def test_slow_tokenizers_mask_like_fast_ones(tmp_path, demo_tokenizer, row):
    rows = rows_of(tmp_path, [row])
    fast, _ = data.tokenize(rows, demo_tokenizer, 512, completions_only=True)
    slow, _ = data.tokenize(rows, SlowTokenizer(demo_tokenizer), 512, completions_only=True)
    assert fast == slow


# ------------------------------------------------------------------------------------------ bad files


def test_bad_lines_are_all_named_with_their_line_numbers(tmp_path):
    lines = [
        CHAT,
        '{"messages": [',  # 2: broken JSON
        "",  # 3: blank, skipped
        {"prompt": "x", "completion": "y"},  # 4: another format
        '{"messages": [{"role": "user", "content": "a"}], "messages": []}',  # 5: duplicate key
        '{"text": NaN}',  # 6: NaN
        {"messages": [{"role": "user", "content": "only a question"}]},  # 7: nothing to learn
        {"messages": [{"role": "robot", "content": "?"}, {"role": "assistant", "content": "!"}]},  # 8: bad role
        "[1, 2]",  # 9: not an object
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(TrainingError) as info:
        data.read_rows("jsonl", str(path))
    message = str(info.value)
    assert str(path) in message and "7 bad line(s)" in message
    for expected in ("line 2: not valid JSON", "line 4: missing 'messages'", "line 5: key 'messages' appears twice",
                     "line 6: NaN is not allowed", "line 7: no assistant message", "line 8: message 1 needs a 'role'",
                     "line 9: expected a JSON object"):
        assert expected in message
    assert "line 3" not in message
    assert info.value.hint


def test_many_bad_lines_are_counted_not_all_listed(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}] + ["{oops"] * 25)
    with pytest.raises(TrainingError, match=r"25 bad line\(s\)") as info:
        data.read_rows("jsonl", str(path))
    assert "... and 15 more" in str(info.value)


@pytest.mark.parametrize(
    ("rows", "fmt", "expected"),
    [
        ([{"question": "?"}], "auto", "line 1: cannot tell the format"),
        ([{"prompt": "p"}], "prompt_completion", "line 1: missing 'completion'"),
        ([{"text": ""}], "text", "line 1: 'text' is empty"),
        ([{"text": 3}], "text", "line 1: 'text' must be text"),
        ([{"messages": []}], "chat", "line 1: 'messages' must be a non-empty list"),
    ],
)
def test_row_problems(tmp_path, rows, fmt, expected):
    with pytest.raises(TrainingError, match=expected):
        rows_of(tmp_path, rows, fmt)


def test_non_utf8_and_missing_and_empty_files(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(TrainingError, match="line 1: not UTF-8"):
        data.read_rows("jsonl", str(path))
    with pytest.raises(TrainingError, match="does not exist"):
        data.read_rows("jsonl", str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(TrainingError, match="has no rows"):
        data.read_rows("jsonl", str(tmp_path / "empty.jsonl"))


def test_the_demo_dataset_is_valid_chat():
    rows = data.read_rows("demo", None)
    assert rows.format == "chat" and len(rows.rows) >= 300 and rows.source == "the demo dataset"


# ----------------------------------------------------------------------------------- split, batches


def _examples(n: int) -> list[data.Example]:
    return [data.Example([i, i + 1], [i, i + 1]) for i in range(n)]


def test_split_is_seeded_disjoint_and_capped():
    examples = _examples(50)
    train, held = data.split(examples, 0.1, seed=3)
    assert len(held) == 5 and len(train) == 45
    assert {e.input_ids[0] for e in train}.isdisjoint({e.input_ids[0] for e in held})
    assert data.split(examples, 0.1, seed=3) == (train, held)
    assert data.split(examples, 0.1, seed=4)[1] != held
    assert data.split(examples, 0.0, seed=3) == (examples, [])
    assert len(data.split(_examples(3), 0.01, seed=0)[1]) == 1  # at least one
    assert len(data.split(_examples(20_000), 0.5, seed=0)[1]) == data.MAX_EVAL_EXAMPLES


def test_micro_batches_cover_each_epoch_once_in_a_seeded_order():
    examples = _examples(10)
    epoch0 = [e.input_ids[0] for i in range(3) for e in data.micro_batch(examples, 4, 7, i)]
    epoch1 = [e.input_ids[0] for i in range(3, 6) for e in data.micro_batch(examples, 4, 7, i)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # reshuffled each epoch
    assert [len(data.micro_batch(examples, 4, 7, i)) for i in range(3)] == [4, 4, 2]
    assert data.micro_batch(examples, 4, 7, 4) == data.micro_batch(examples, 4, 7, 4)


def test_collate_pads_right_and_masks_padding():
    batch = data.collate([data.Example([5, 6, 7], [IGNORE_INDEX, 6, 7]), data.Example([8], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long
