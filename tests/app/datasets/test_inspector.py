"""The sample inspector (app.services.inspector + app.ui.inspector) on the demo dataset: a known row's exact text,
tokens and labels, the length report's counts derived independently with transformers, the HTML, and its errors."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from app.datasets import DatasetError
from app.services.inspector import histogram, inspect_sample, length_report
from app.settings import load_settings
from app.ui.inspector import error_html, histogram_html, sample_html

DEMO_ROWS = Path(__file__).resolve().parents[3] / "worker" / "training" / "demo_data" / "demo.jsonl"


@pytest.fixture(scope="module")
def settings(data_dir):
    return dataclasses.replace(load_settings(), data_dir=Path(data_dir))


def demo_row(index: int) -> list[dict[str, str]]:
    return json.loads(DEMO_ROWS.read_text().splitlines()[index])["messages"]


def spec(**training) -> dict:
    return {"base_model": "demo", "dataset": {"source": "demo"}, "training": training}


def test_a_demo_row_is_shown_exactly_as_it_is_trained(settings, demo_tokenizer):
    messages = demo_row(0)
    user, answer = messages[0]["content"], messages[1]["content"]
    view = inspect_sample(spec(max_seq_length=512), 0, settings)
    prompt = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    assert view.text == prompt + f"{answer}<|im_end|>"
    assert (view.row, view.line, view.rows, view.format) == (0, 1, 640, "chat")
    assert view.template == "the tokenizer's own chat template" and view.warnings == []
    masked = [t for t in view.tokens if not t.trained]
    trained = [t for t in view.tokens if t.trained]
    assert "".join(t.piece for t in masked) == prompt  # every prompt token masked...
    assert "".join(t.piece for t in trained) == f"{answer}<|im_end|>"  # ...every answer token trained, the EOS too
    assert view.tokens[:len(masked)] == masked  # the prompt comes first, then the answer
    assert [t.id for t in view.tokens] == demo_tokenizer(prompt + answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert view.tokens[-1].eos and view.tokens[-1].special and view.tokens[-1].trained
    assert [t.piece for t in view.tokens if t.special] == ["<|im_start|>", "<|im_end|>", "<|im_start|>", "<|im_end|>"]
    assert view.trained_tokens == len(trained) and view.masked_tokens == len(masked) and view.length == len(view.tokens)


def test_training_on_all_tokens_and_a_system_prompt_show_up(settings):
    s = spec(train_on_completions_only=False)
    s["dataset"]["system_prompt"] = "Answer in one line."
    view = inspect_sample(s, 3, settings)
    assert view.text.startswith("<|im_start|>system\nAnswer in one line.<|im_end|>\n<|im_start|>user\n")
    assert all(t.trained for t in view.tokens) and not view.completions_only


def test_a_chosen_built_in_template_and_its_missing_tokens_are_shown(settings):
    s = spec()
    s["dataset"]["template"] = "gemma"
    view = inspect_sample(s, 0, settings)
    assert view.text.startswith("<start_of_turn>user\n") and view.template == "the built-in 'gemma' template"
    assert any("<start_of_turn>, <end_of_turn>" in w for w in view.warnings)
    html = sample_html(view)
    assert "&lt;start_of_turn&gt;" in html and "<start_of_turn>" not in html


def test_a_cut_row_says_so_and_a_row_with_nothing_to_learn_is_marked_dropped(settings):
    lengths = [len(inspect_sample(spec(), i, settings).tokens) for i in range(8)]
    longest = max(range(8), key=lambda i: lengths[i])
    view = inspect_sample(spec(max_seq_length=lengths[longest] - 3), longest, settings)
    assert view.truncated and len(view.tokens) == view.max_seq_length == lengths[longest] - 3 and view.length == lengths[longest]
    assert not view.tokens[-1].eos and any("cut at max_seq_length" in w for w in view.warnings)
    assert "".join(t.piece for t in view.tokens) == view.text[: view.cut_at]  # the kept tokens end where the cut is
    cut = re.search(r'<span class="ps-sample-cut"[^>]*>(.*?)</span>', sample_html(view), re.S)
    assert unescape(cut.group(1)) == view.text[view.cut_at :] and view.cut_at < len(view.text)
    assert inspect_sample(spec(), longest, settings).cut_at is None
    prompt_only = inspect_sample(spec(max_seq_length=10), 0, settings)
    assert not prompt_only.learnable and not any(t.trained for t in prompt_only.tokens)
    assert any("left out of training" in w for w in prompt_only.warnings)


def test_sample_html_shows_text_then_distinct_chips_with_a_legend(settings):
    view = inspect_sample(spec(), 0, settings)
    html = sample_html(view)
    text_at, chips_at = html.index('class="ps-sample-text"'), html.index('class="ps-sample-tokens"')
    assert text_at < chips_at
    assert unescape(re.search(r'<pre class="ps-sample-text"[^>]*>(.*?)</pre>', html, re.S).group(1)) == view.text
    assert html.count("ps-tok ps-tok-trained") == view.trained_tokens and html.count("ps-tok ps-tok-masked") == view.masked_tokens
    assert html.count('data-eos="1"') == 2  # the user turn's <|im_end|> and the answer's: both are the EOS token
    assert html.count('data-special="1"') == 4
    assert 'class="ps-tok-legend"' in html and "trained" in html and "masked" in html
    assert "<|im_start|>" not in html  # escaped everywhere
    assert "Row 1 of 640" in html and f"{view.trained_tokens} trained, {view.masked_tokens} masked" in html


def test_the_length_report_counts_what_transformers_counts(settings, demo_tokenizer):
    """Lengths, cuts and drops derived independently: transformers' template + tokenizer on every demo row."""
    max_len = 40
    rows = [json.loads(line)["messages"] for line in DEMO_ROWS.read_text().splitlines()]
    full, prompt = [], []
    for messages in rows:
        ids = demo_tokenizer.apply_chat_template(messages, tokenize=True)
        full.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids) - 1)  # the trailing "\n" is not trained on
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        head = demo_tokenizer.apply_chat_template(messages[:first], tokenize=True, add_generation_prompt=True)
        prompt.append(len(head["input_ids"] if hasattr(head, "keys") else head))
    report = length_report(spec(max_seq_length=max_len), settings)
    assert (report.rows, report.total_rows, report.max_seq_length) == (640, 640, max_len)
    assert report.truncated == sum(n > max_len for n in full) > 0
    assert report.dropped == sum(p >= max_len for p in prompt) > 0  # the first answer starts past the cut
    assert report.longest == max(full) and report.mean == pytest.approx(sum(full) / len(full))
    assert sum(b.count for b in report.bins) == 640
    for b in report.bins:
        assert b.count == sum(b.low <= n <= b.high for n in full)
    assert report.packing is False and report.packed_sequences is None


def test_the_length_report_with_packing_counts_the_packed_sequences(settings):
    report = length_report(spec(max_seq_length=128, packing=True), settings)
    assert report.packing and report.dropped == 0
    total = 640 * report.mean
    assert total / 128 <= report.packed_sequences < total / 128 * 1.5  # about full sequences, never over-filled
    assert f"fill about {report.packed_sequences} sequences of 128 tokens" in histogram_html(report)


def test_histogram_bins_cover_the_max_seq_length_line():
    bins = histogram([3, 9, 10, 25], max_len=40, bins=4)
    assert [(b.low, b.high, b.count) for b in bins] == [(1, 10, 3), (11, 20, 0), (21, 30, 1), (31, 40, 0)]
    assert histogram([], 40) == []
    assert histogram([100], 40, bins=4)[-1].high >= 100


def test_histogram_html_draws_bars_and_the_line_and_says_the_counts(settings):
    report = length_report(spec(max_seq_length=40), settings)
    html = histogram_html(report)
    assert html.count("<rect") == len(report.bins)
    assert "max_seq_length 40" in html and "<line" in html
    assert f"{report.truncated} would be cut at max_seq_length=40" in html
    assert f"{report.dropped} would be dropped" in html


def test_errors_say_what_to_do(settings, tmp_path):
    with pytest.raises(DatasetError, match="Row 641 does not exist") as info:
        inspect_sample(spec(), 640, settings)
    assert "from 1 to 640" in info.value.hint
    empty = dataclasses.replace(settings, data_dir=tmp_path)
    with pytest.raises(DatasetError, match="built on the first run") as info:
        inspect_sample(spec(), 0, empty)
    html = error_html(info.value)
    assert 'role="alert"' in html and "built on the first run" in html and "python -m worker.training.demo" in html
    assert "&lt;b&gt;" in error_html(DatasetError("<b>", hint="x"))
    with pytest.raises(DatasetError, match="not on this machine"):
        inspect_sample({**spec(), "base_model": "nobody-here/no-model-xyz"}, 0, settings)
    missing = {**spec(), "dataset": {"source": "jsonl", "path": str(tmp_path / "gone.jsonl")}}
    with pytest.raises(DatasetError, match="does not exist"):
        length_report(missing, settings)


def test_the_inspector_runs_without_torch_or_transformers(data_dir):
    code = (
        "import sys, dataclasses\nfrom pathlib import Path\n"
        "from app.settings import load_settings\nfrom app.services.inspector import inspect_sample, length_report\n"
        "from app.ui.inspector import sample_html, histogram_html\n"
        f"s = dataclasses.replace(load_settings(), data_dir=Path({str(data_dir)!r}))\n"
        "spec = {'base_model': 'demo', 'dataset': {'source': 'demo'}, 'training': {}}\n"
        "assert 'ps-tok-trained' in sample_html(inspect_sample(spec, 2, s))\n"
        "assert '<svg' in histogram_html(length_report(spec, s))\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[3],
                          env={"PATH": "/usr/bin:/bin", "STUDIO_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stored_dataset_is_inspected_with_its_mapping(studio, session, demo_folder, tmp_path):
    """An instruction-shaped CSV stored through the Datasets service: the inspector reads it as the trainer will (chat)."""
    import shutil

    from app.services.datasets import import_file

    shutil.copytree(demo_folder, studio.data_dir / "demo-model" / demo_folder.name)
    csv = tmp_path / "tasks.csv"
    csv.write_text("instruction,output\nName a colour.,Blue.\nCount to two.,One two.\n", encoding="utf-8")
    record = import_file(session, csv, name="tasks.csv", settings=studio)
    stored = {"base_model": "demo", "dataset": {"source": "stored", "dataset_id": record.id}, "training": {}}
    view = inspect_sample(stored, 1, studio)
    assert view.format == "chat" and view.rows == 2
    assert view.text == "<|im_start|>user\nCount to two.<|im_end|>\n<|im_start|>assistant\nOne two.<|im_end|>"
    assert "".join(t.piece for t in view.tokens if t.trained) == "One two.<|im_end|>"
    with pytest.raises(DatasetError, match="no stored dataset 999"):
        inspect_sample({**stored, "dataset": {"source": "stored", "dataset_id": 999}}, 0, studio)


def test_the_length_report_is_remembered_until_the_file_changes(settings, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one two"}\n{"text": "three"}\n', encoding="utf-8")
    file_spec = {"base_model": "demo", "dataset": {"source": "jsonl", "path": str(path)}, "training": {}}
    first = length_report(file_spec, settings)
    assert first.rows == 2 and length_report(file_spec, settings) is first
    assert length_report({**file_spec, "training": {"max_seq_length": 64}}, settings) is not first  # other settings: measured again
    path.write_text('{"text": "one two"}\n{"text": "three"}\n{"text": "four five six"}\n', encoding="utf-8")
    assert length_report(file_spec, settings).rows == 3


def test_characters_split_into_several_byte_tokens_are_shown_once(settings, tmp_path):
    path = tmp_path / "u.jsonl"
    text = "café ü 日本 🙂!"
    path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    view = inspect_sample({"base_model": "demo", "dataset": {"source": "jsonl", "path": str(path)}, "training": {}}, 0, settings)
    assert "".join(t.piece for t in view.tokens) == text  # the text, each character once; then the appended EOS ("")
    pieces = [(t.piece, t.continuation) for t in view.tokens]
    assert pieces[pieces.index(("日", False)) + 1] == ("", True)  # "日" is three bytes, three tokens
    assert sum(t.continuation for t in view.tokens) == len(text.encode()) - len(text)  # the demo BPE merges none of these bytes
    assert "\u2026" in sample_html(view)
