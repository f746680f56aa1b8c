"""worker.training.demo: the offline demo model is built once, deterministically, as a normal model folder."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from worker.training import demo


def test_the_demo_folder_is_a_transformers_chat_model(demo_folder, demo_tokenizer):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "demo_build.json"):
        assert (demo_folder / name).is_file()
    assert demo_tokenizer.eos_token == "<|im_end|>" and demo_tokenizer.pad_token == "<|endoftext|>"
    text = demo_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    info = json.loads((demo_folder / "demo_build.json").read_text())
    assert info["pretrain_loss"] < 2.0  # the pre-training did teach it the demo world
    assert info["fingerprint"] == demo.fingerprint()


def test_ensure_reuses_the_cached_build(data_dir):
    lines: list[str] = []
    assert demo.ensure_demo_model(data_dir, log=lines.append) == demo.demo_model_dir(data_dir)
    assert lines == []


def test_a_build_is_deterministic(tmp_path):
    recipe = demo.DemoRecipe(hidden_size=32, intermediate_size=64, num_layers=1, pretrain_steps=3, pretrain_batch=2, tokenizer_texts=200)
    first = demo.ensure_demo_model(tmp_path / "a", recipe=recipe, log=lambda _: None)
    second = demo.ensure_demo_model(tmp_path / "b", recipe=recipe, log=lambda _: None)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    assert first.name != demo.demo_model_dir(tmp_path).name  # another recipe, another cache entry
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".build-")]


def test_the_command_line_prints_where_the_model_is(data_dir, capsys):
    demo.main(["--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert str(demo.demo_model_dir(data_dir).resolve()) in out and "parameters" in out
