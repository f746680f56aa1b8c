"""worker.training.data: checked rows -> token ids with loss labels (app.datasets.tokenization) -> split -> batches."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.datasets import Rows
from app.datasets.templates import BUILTIN_TEMPLATES
from app.datasets.tokenization import TokenSettings
from app.datasets.tokenizer_files import load_tokenizer
from app.jobspec import parse_job_spec
from worker.training import data
from worker.training.data import IGNORE_INDEX
from worker.training.errors import TrainingError

from .conftest import demo_spec

CHAT = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Greet Anna."},
    {"role": "assistant", "content": "Hello, Anna!"},
    {"role": "user", "content": "Antonym of hot?"},
    {"role": "assistant", "content": "cold"},
]}


@pytest.fixture(scope="module")
def tok(demo_folder):
    """The demo tokenizer as the trainer and the inspector both use it (torch-free, from its files)."""
    return load_tokenizer(demo_folder)


def rows_of(rows: list[dict[str, Any]], fmt: str) -> Rows:
    return Rows("test rows", fmt, rows, list(range(1, len(rows) + 1)))


def trained_text(demo_tokenizer: Any, example: data.Example) -> str:
    """The text of the tokens that carry loss, in order."""
    return demo_tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def one(rows: Rows, tok: Any, **settings: Any) -> data.Example:
    (example,), _ = data.tokenize(rows, tok, TokenSettings(**settings))
    return example


# ----------------------------------------------------------------------- each format into batches


def test_chat_trains_only_the_assistant_turns_each_ending_with_its_marker(tok, demo_tokenizer):
    example = one(rows_of([CHAT], "chat"), tok)
    eos = demo_tokenizer.eos_token_id
    assert example.input_ids[-1] == eos and example.input_ids[-2] != eos  # EOS ends it, once
    assert trained_text(demo_tokenizer, example) == "Hello, Anna!<|im_end|>cold<|im_end|>"
    assert demo_tokenizer.decode(example.input_ids).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nGreet Anna.")
    batch = data.collate([example], pad_id=demo_tokenizer.pad_token_id)
    trained = batch["labels"][0] != IGNORE_INDEX
    assert batch["labels"][0][trained].tolist() == batch["input_ids"][0][trained].tolist()
    assert int(trained.sum()) == len(demo_tokenizer("Hello, Anna!<|im_end|>cold<|im_end|>")["input_ids"])


def test_chat_without_completion_masking_trains_every_token(tok):
    example = one(rows_of([CHAT], "chat"), tok, completions_only=False)
    assert example.labels == example.input_ids


def test_prompt_completion_masks_the_prompt(tok, demo_tokenizer):
    example = one(rows_of([{"prompt": "Q: 2 + 2?\nA:", "completion": " 4"}], "prompt_completion"), tok)
    assert trained_text(demo_tokenizer, example) == " 4<|im_end|>"
    assert demo_tokenizer.decode(example.input_ids) == "Q: 2 + 2?\nA: 4<|im_end|>"


def test_text_trains_everything_and_appends_eos(tok, demo_tokenizer):
    example = one(rows_of([{"text": "The sky is blue."}], "text"), tok)
    assert example.labels == example.input_ids
    assert demo_tokenizer.decode(example.input_ids) == "The sky is blue.<|im_end|>"


def test_a_system_prompt_is_added_to_conversations_without_one(tok, demo_tokenizer):
    plain = {"messages": CHAT["messages"][1:]}
    example = one(rows_of([plain], "chat"), tok, system_prompt="Answer kindly.")
    assert demo_tokenizer.decode(example.input_ids).startswith("<|im_start|>system\nAnswer kindly.<|im_end|>\n<|im_start|>user")
    kept = one(rows_of([CHAT], "chat"), tok, system_prompt="Answer kindly.")  # it has one: left as it is
    assert "Answer kindly" not in demo_tokenizer.decode(kept.input_ids)


def test_a_built_in_template_is_used_when_chosen(tok, demo_tokenizer):
    example = one(rows_of([CHAT], "chat"), tok, template="alpaca")
    assert demo_tokenizer.decode(example.input_ids) == (
        "Be brief.\n\n### Instruction:\nGreet Anna.\n\n### Response:\nHello, Anna!<|im_end|>\n\n"
        "### Instruction:\nAntonym of hot?\n\n### Response:\ncold<|im_end|>"
    )
    assert trained_text(demo_tokenizer, example) == "Hello, Anna!<|im_end|>cold<|im_end|>"


def test_truncation_cuts_and_drops_the_eos(tok, demo_tokenizer):
    (example,), stats = data.tokenize(rows_of([{"text": "one two three four five six seven eight nine ten " * 4}], "text"), tok, TokenSettings(12))
    assert len(example.input_ids) == 12 and example.input_ids[-1] != demo_tokenizer.eos_token_id
    assert stats.truncated == 1


def test_examples_with_nothing_left_to_learn_are_dropped_then_refused(tok):
    long_prompt = {"prompt": "word " * 50, "completion": "answer"}
    examples, stats = data.tokenize(rows_of([long_prompt, {"prompt": "Hi", "completion": " there"}], "prompt_completion"), tok, TokenSettings(16))
    assert len(examples) == 1 and stats.dropped == 1
    with pytest.raises(TrainingError, match="max_seq_length=16") as info:
        data.tokenize(rows_of([long_prompt], "prompt_completion"), tok, TokenSettings(16))
    assert "max_seq_length" in info.value.hint


def test_a_template_that_rejects_a_conversation_names_the_line(tok):
    rows = rows_of([CHAT, {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "late"}, {"role": "assistant", "content": "b"}]}], "chat")
    with pytest.raises(TrainingError, match="line 2: the built-in 'mistral' template rejected") as info:
        data.tokenize(rows, tok, TokenSettings(template="mistral"))
    assert "dataset.template" in info.value.hint


def test_a_tokenizer_without_chat_template_trains_and_saves_the_plain_one(tmp_path, demo_folder, demo_tokenizer):
    from transformers import AutoTokenizer

    folder = tmp_path / "no-template"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo_folder / name, folder / name)
    hf = AutoTokenizer.from_pretrained(folder)
    assert not hf.chat_template
    logs: list[str] = []
    job = parse_job_spec(demo_spec())
    (example,), _ = data.tokenize_for_job(rows_of([CHAT], "chat"), SimpleNamespace(tokenizer=hf), job, logs.append)
    assert demo_tokenizer.decode(example.input_ids).startswith("### System:\nBe brief.\n### User:\nGreet Anna.\n### Assistant:\nHello, Anna!<|im_end|>")
    assert trained_text(demo_tokenizer, example) == "Hello, Anna!<|im_end|>cold<|im_end|>"
    assert any("built-in 'plain' template" in line for line in logs)
    assert hf.apply_chat_template(CHAT["messages"], tokenize=False).rstrip() == demo_tokenizer.decode(example.input_ids)  # saved: inference formats alike


def test_a_template_needing_tokens_the_tokenizer_lacks_is_warned_about_in_the_log(demo_tokenizer):
    logs: list[str] = []
    spec = demo_spec()
    spec["dataset"]["template"] = "llama-3"
    hf = copy.deepcopy(demo_tokenizer)  # tokenize_for_job gives it the chosen template, to be saved with the adapter
    data.tokenize_for_job(rows_of([CHAT], "chat"), SimpleNamespace(tokenizer=hf), parse_job_spec(spec), logs.append)
    assert hf.chat_template == BUILTIN_TEMPLATES["llama-3"] and demo_tokenizer.chat_template != hf.chat_template
    warning = next(line for line in logs if line.startswith("warning:"))
    assert "<|start_header_id|>" in warning and "<|eot_id|>" in warning and "not have as special tokens" in warning


def test_the_trainers_examples_are_the_inspectors_tokens(demo_folder, demo_tokenizer, data_dir):
    """The same demo row through the web process's inspector and the trainer: identical ids and labels."""
    import dataclasses

    from app.datasets import read_rows
    from app.services.inspector import inspect_sample
    from app.settings import load_settings

    spec = demo_spec(max_seq_length=48)
    spec["dataset"]["system_prompt"] = "Be helpful."
    settings = dataclasses.replace(load_settings(), data_dir=Path(data_dir))
    rows = read_rows("demo", None)
    examples, _ = data.tokenize_for_job(rows, SimpleNamespace(tokenizer=demo_tokenizer), parse_job_spec(spec), lambda _line: None)
    for index in (0, 4, 7):
        view = inspect_sample(spec, index, settings)
        assert [t.id for t in view.tokens] == examples[index].input_ids
        assert [t.id if t.trained else IGNORE_INDEX for t in view.tokens] == examples[index].labels


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


def test_without_tokenizer_files_the_trainer_uses_the_rust_tokenizer_inside_transformers(tok, demo_tokenizer):
    detached = copy.deepcopy(demo_tokenizer)
    detached.name_or_path = "not-a-folder-and-not-cached/model"
    fallback = data.text_tokenizer(detached, "not-a-folder-and-not-cached/model")
    assert fallback.source == "not-a-folder-and-not-cached/model" and fallback.chat_template == tok.chat_template
    assert fallback.special == tok.special
    rows = rows_of([CHAT, {"messages": CHAT["messages"][1:3]}], "chat")
    assert data.tokenize(rows, fallback, TokenSettings()) == data.tokenize(rows, tok, TokenSettings())
    assert data.text_tokenizer(demo_tokenizer, "demo") is tok  # the demo model's folder: its files, loaded once
