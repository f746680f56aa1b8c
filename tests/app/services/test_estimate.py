"""The pre-flight estimate and the model catalog: arithmetic on shapes, no torch, no network."""

from __future__ import annotations

import json

import pytest

from app.services import catalog
from app.services.estimate import count_steps, estimate_run, trainable_params


def test_catalog_sizes_match_the_published_parameter_counts():
    sizes = {m.id: m.arch.total_params() / 1e9 for m in catalog.MODELS}
    assert sizes["Qwen/Qwen2.5-0.5B-Instruct"] == pytest.approx(0.494, abs=0.01)
    assert sizes["meta-llama/Llama-3.2-1B-Instruct"] == pytest.approx(1.236, abs=0.01)
    assert sizes["mistralai/Mistral-7B-Instruct-v0.3"] == pytest.approx(7.248, abs=0.01)
    assert sizes["microsoft/Phi-3.5-mini-instruct"] == pytest.approx(3.82, abs=0.02)
    assert catalog.model_choices()[0] == ("Built-in demo model (offline)", "demo")


def test_lora_parameters_are_rank_times_in_plus_out_over_targeted_layers():
    arch = catalog.resolve_architecture("meta-llama/Llama-3.2-1B-Instruct")[0]
    # default targets for llama: q_proj (2048->2048) and v_proj (2048->512), 16 layers
    params, layers = trainable_params(arch, {"r": 8})
    assert layers == 32 and params == 16 * 8 * ((2048 + 2048) + (2048 + 512))
    all_linear, layers = trainable_params(arch, {"r": 8, "target_modules": "all-linear"})
    assert layers == 16 * 7 and all_linear > params
    dora, _ = trainable_params(arch, {"r": 8, "use_dora": True})
    assert dora == params + 16 * (2048 + 512)
    assert trainable_params(arch, {"r": 8, "target_modules": ["q_proj"], "rank_pattern": {"q_proj": 2}})[0] == 16 * 2 * 4096


def test_other_methods_are_counted_by_their_own_configs():
    arch = catalog.resolve_architecture("meta-llama/Llama-3.2-1B-Instruct")[0]
    lora, _ = trainable_params(arch, {"peft_type": "LORA", "r": 8})
    assert trainable_params(arch, {"peft_type": "LOHA", "r": 8})[0] == 2 * lora
    # IA3 on llama: k_proj and v_proj (out 512 each) and down_proj as a feed-forward layer (in 8192)
    ia3, layers = trainable_params(arch, {"peft_type": "IA3", "feedforward_modules": ["down_proj"]})
    assert layers == 48 and ia3 == 16 * (512 + 512 + 8192)
    # OFT's default 32-wide blocks on q_proj and v_proj (input 2048): 64 blocks of 32 * 31 / 2 each, 32 layers
    assert trainable_params(arch, {"peft_type": "OFT"}) == (32 * 64 * (32 * 31 // 2), 32)
    # LN tuning on llama: both norms of each block and the final norm, 2048 weights each
    assert trainable_params(arch, {"peft_type": "LN_TUNING"}) == ((16 * 2 + 1) * 2048, 33)
    # trainable tokens: the rows of the input embedding (tied to the head, which shares them)
    assert trainable_params(arch, {"peft_type": "TRAINABLE_TOKENS", "token_indices": [7, 8]})[0] == 2 * 2048
    # settings the engine would refuse give no number and a note saying what to fix
    note = estimate_run({"base_model": "demo", "method": {"peft_type": "OFT", "r": 8}}, dataset_rows=10).notes
    assert any("Fix the method settings" in n for n in note)


def test_steps_follow_rows_batch_accumulation_epochs_and_max_steps():
    assert count_steps(100, {"batch_size": 4, "epochs": 2, "eval_fraction": 0.0}) == (100, 25, 50)
    assert count_steps(100, {"batch_size": 4, "gradient_accumulation_steps": 2, "epochs": 1, "eval_fraction": 0.1}) == (90, 12, 12)
    assert count_steps(100, {"max_steps": 7}) == (90, 23, 7)
    assert count_steps(None, {"max_steps": 7}) == (None, None, 7)


def test_estimate_of_a_local_folder_reads_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "vocab_size": 1000, "num_attention_heads": 4,
    }))
    est = estimate_run({"base_model": str(tmp_path), "method": {"r": 4}, "training": {"batch_size": 2, "max_seq_length": 16}}, dataset_rows=10)
    assert est.model_source == "the folder's config.json"
    assert est.trainable_params == 2 * 4 * (128 + 128) and est.total_bytes > est.weights_bytes > 0


def test_unknown_models_still_get_steps_and_say_why_there_is_no_memory_figure():
    est = estimate_run({"base_model": "someone/unknown-model", "method": {"r": 4}, "training": {"max_steps": 30}}, dataset_rows=None)
    assert est.total_steps == 30 and est.total_bytes is None
    assert "unknown until the worker downloads it" in est.notes[0]


def test_memory_grows_with_batch_and_shrinks_with_checkpointing():
    spec = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "method": {"r": 16}, "training": {"batch_size": 4, "max_seq_length": 1024}}
    base = estimate_run(spec, dataset_rows=100)
    bigger = estimate_run({**spec, "training": {"batch_size": 8, "max_seq_length": 1024}}, dataset_rows=100)
    ckpt = estimate_run({**spec, "training": {**spec["training"], "gradient_checkpointing": True}}, dataset_rows=100)
    assert bigger.total_bytes > base.total_bytes > ckpt.total_bytes
    assert base.weights_bytes == base.total_params * 2
