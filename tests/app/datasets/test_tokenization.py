"""app.datasets.tokenization / tokenizer_files: the torch-free path gives transformers' token ids, masks what it should,
ends with one EOS, and finds tokenizer files (demo build, folder, Hub cache) or says what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.datasets import DatasetError, Rows
from app.datasets.templates import BUILTIN_TEMPLATES, resolve_template
from app.datasets.tokenization import (
    IGNORE_INDEX,
    TextTokenizer,
    TokenSettings,
    encode_row,
    pack_plan,
    template_warnings,
    tokenize_rows,
)
from app.datasets.tokenizer_files import demo_tokenizer_folder, load_tokenizer, tokenizer_folder

DEMO_ROWS = Path(__file__).resolve().parents[3] / "worker" / "training" / "demo_data" / "demo.jsonl"
CHAT = {"messages": [{"role": "user", "content": "Greet Anna."}, {"role": "assistant", "content": "Hello, Anna!"}]}


@pytest.fixture(scope="module")
def tok(demo_folder) -> TextTokenizer:
    return load_tokenizer(demo_folder)


def demo_rows() -> Rows:
    rows = [json.loads(line) for line in DEMO_ROWS.read_text().splitlines() if line.strip()]
    return Rows("the demo dataset", "chat", rows, list(range(1, len(rows) + 1)))


def test_the_demo_tokenizer_gives_transformers_ids_for_every_demo_row(tok, demo_tokenizer):
    """The torch-free path == transformers' tokenizer + apply_chat_template, row by row (the trailing newline aside)."""
    done = tokenize_rows(demo_rows(), tok, TokenSettings(max_seq_length=1024))
    assert len(done.examples) == len(demo_rows().rows) and done.dropped == done.truncated == 0
    for row, enc in zip(demo_rows().rows, done.examples):
        full = demo_tokenizer.apply_chat_template(row["messages"], tokenize=True)
        full = list(full["input_ids"] if hasattr(full, "keys") else full)
        assert full[-1] == demo_tokenizer("\n", add_special_tokens=False)["input_ids"][0]  # the template ends with "\n"
        assert enc.input_ids == full[:-1]  # which the studio drops: the answer ends with <|im_end|>, the EOS


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_built_in_templates_give_transformers_ids(name, tok, demo_tokenizer):
    import copy

    hf = copy.deepcopy(demo_tokenizer)
    hf.chat_template = BUILTIN_TEMPLATES[name]
    enc = encode_row(CHAT, "chat", tok, resolve_template(name, None), TokenSettings())
    text = hf.apply_chat_template(CHAT["messages"], tokenize=False).rstrip()
    ids = hf(text, add_special_tokens=False)["input_ids"]
    assert enc.text == text
    expected = ids if ids[-1] == hf.eos_token_id else [*ids, hf.eos_token_id]  # EOS appended only where the text lacks it
    assert enc.input_ids == expected


@pytest.mark.parametrize(
    ("row", "fmt", "trained"),
    [
        ({"prompt": "Q: 2 + 2?\nA:", "completion": " 4"}, "prompt_completion", " 4<|im_end|>"),
        ({"text": "The sky is blue."}, "text", "The sky is blue.<|im_end|>"),
        (CHAT, "chat", "Hello, Anna!<|im_end|>"),
    ],
)
def test_each_format_masks_the_prompt_and_ends_with_one_trained_eos(row, fmt, trained, tok, demo_tokenizer):
    enc = encode_row(row, fmt, tok, resolve_template("auto", tok.chat_template), TokenSettings())
    eos = demo_tokenizer.eos_token_id
    assert enc.input_ids[-1] == eos and enc.input_ids.count(eos) == (2 if fmt == "chat" else 1)  # chat: user turn's <|im_end|> too
    assert enc.labels[-1] == eos
    assert demo_tokenizer.decode([t for t, keep in zip(enc.input_ids, enc.trained) if keep]) == trained
    assert all(label == IGNORE_INDEX for label, keep in zip(enc.labels, enc.trained) if not keep)
    if fmt != "chat":
        assert enc.input_ids == demo_tokenizer(enc.text + "<|im_end|>")["input_ids"]


def test_offsets_point_at_each_tokens_text(tok):
    enc = encode_row(CHAT, "chat", tok, resolve_template("auto", tok.chat_template), TokenSettings())
    assert "".join(enc.text[a:b] for a, b in enc.offsets) == enc.text


def test_truncation_and_dropping_are_counted(tok):
    rows = Rows("r", "prompt_completion", [{"prompt": "word " * 40, "completion": " yes"}, {"prompt": "Hi", "completion": " there friend " * 10}], [1, 2])
    done = tokenize_rows(rows, tok, TokenSettings(max_seq_length=12))
    assert done.truncated == 2 and done.dropped == 1 and len(done.examples) == 1
    assert done.lengths[0] > 12 and len(done.examples[0].input_ids) == 12
    assert done.examples[0].input_ids[-1] != tok.eos_id  # cut: it did not end, so no EOS


def test_template_warnings_name_missing_special_tokens(tok):
    assert template_warnings(resolve_template("chatml", tok.chat_template), tok) == []
    (warning,) = [w for w in template_warnings(resolve_template("phi-3", None), tok) if "special tokens" in w]
    assert "<|user|>, <|assistant|>, <|end|>" in warning and "'phi-3'" in warning
    assert any("has none" in w for w in template_warnings(resolve_template("llama-3", None), tok))  # no BOS in the demo tokenizer


def test_a_folder_without_tokenizer_json_is_refused_in_words(tmp_path):
    with pytest.raises(DatasetError, match="has no tokenizer.json") as info:
        TextTokenizer.from_folder(tmp_path)
    assert "tokenizer.json" in info.value.hint


def test_tokenizer_config_variants_are_read(tmp_path, demo_folder):
    """AddedToken dicts and a list of named templates, as transformers writes them."""
    shutil.copy(demo_folder / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {
        "eos_token": {"content": "<|im_end|>", "special": True},
        "bos_token": "<|im_start|>",
        "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = TextTokenizer.from_folder(tmp_path)
    assert tok.special == {"eos_token": "<|im_end|>", "bos_token": "<|im_start|>"} and tok.chat_template == "D"
    assert tok.bos_id == 1 and tok.eos_id == 2


@pytest.mark.parametrize(("add_bos", "add_eos"), [(True, False), (False, True), (True, True), (False, False)])
def test_add_bos_and_eos_token_in_the_config_encode_as_transformers_encodes(tmp_path, demo_folder, add_bos, add_eos):
    """transformers 5 leaves a tokenizers-backed tokenizer's post-processor alone whatever these flags say; so do we."""
    from transformers import AutoTokenizer

    shutil.copy(demo_folder / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((demo_folder / "tokenizer_config.json").read_text())
    config.update(bos_token="<|im_start|>", add_bos_token=add_bos, add_eos_token=add_eos)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok, hf = TextTokenizer.from_folder(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    for text in ("hi there", "Q: 2 + 2?\nA: 4"):
        assert tok.encode(text, add_special_tokens=True)[0] == hf(text)["input_ids"]
        assert tok.encode(text, add_special_tokens=False)[0] == hf(text, add_special_tokens=False)["input_ids"]


def test_the_demo_folder_is_found_or_the_message_says_it_is_built_on_the_first_run(tmp_path, data_dir, demo_folder):
    assert demo_tokenizer_folder(data_dir) == demo_folder
    assert tokenizer_folder("demo", data_dir) == demo_folder
    with pytest.raises(DatasetError, match="built on the first run") as info:
        tokenizer_folder("demo", tmp_path)
    assert "python -m worker.training.demo" in info.value.hint


def test_a_local_folder_is_read_directly_and_a_missing_one_named(tmp_path, demo_folder):
    assert tokenizer_folder(str(demo_folder), tmp_path) == demo_folder
    with pytest.raises(DatasetError, match="does not exist"):
        tokenizer_folder(str(tmp_path / "nope" / "model"), tmp_path)


def test_hub_ids_come_from_the_local_cache_only(tmp_path, demo_folder, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DatasetError, match="not on this machine") as info:
        tokenizer_folder("someone/tiny-model", tmp_path)
    assert "huggingface-cli download someone/tiny-model" in info.value.hint
    repo = tmp_path / "models--someone--tiny-model"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(demo_folder / name, snapshot / name)
    assert tokenizer_folder("someone/tiny-model", tmp_path) == snapshot
    assert load_tokenizer(snapshot).chat_template == (demo_folder / "chat_template.jinja").read_text()


def test_pack_plan_is_seeded_and_never_overfills():
    lengths = [5, 3, 6, 2, 4, 8, 1]
    plan = pack_plan(lengths, 8, seed=1)
    assert plan == pack_plan(lengths, 8, seed=1)
    assert sorted(i for p in plan for i in p) == list(range(7))
    assert all(sum(lengths[i] for i in p) <= 8 for p in plan)


def test_tokenizing_imports_neither_torch_nor_transformers(demo_folder):
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from app.datasets.tokenizer_files import load_tokenizer\nfrom app.datasets.tokenization import encode_row, TokenSettings\n"
        "from app.datasets.templates import resolve_template\n"
        f"tok = load_tokenizer(Path({str(demo_folder)!r}))\n"
        "row = {'messages': [{'role': 'user', 'content': 'a'}, {'role': 'assistant', 'content': 'b'}]}\n"
        "enc = encode_row(row, 'chat', tok, resolve_template('auto', tok.chat_template), TokenSettings())\n"
        "assert enc.input_ids\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
