"""The New run estimate's trainable-parameter numbers against real models: the catalog's architectures laid
out as modules (app.services.estimate.architecture_shape) describe what transformers builds, and every
registered method's estimate equals the trainable numel of the real adapter on that model."""

from __future__ import annotations

import warnings

import pytest
import torch

import peft_core
from app.jobspec import method_config
from app.services import catalog
from app.services.estimate import architecture_shape, estimate_run, trainable_params
from peft_core.describe import describe_model
from peft_core.registry import registered_methods

torch.set_num_threads(1)

# Tiny versions of the catalog's families (same model_type, so the same layout, default targets and norms).
FAMILIES = {
    "llama": catalog.DEMO_ARCH,
    "qwen2": catalog.Architecture("qwen2", 32, 2, 48, 64, 4, 2, 8, True),
    "qwen3": catalog.Architecture("qwen3", 32, 2, 48, 64, 4, 2, 16, True),
    "gemma3_text": catalog.Architecture("gemma3_text", 32, 2, 48, 64, 2, 1, 16, True),
    "phi3": catalog.Architecture("phi3", 32, 2, 48, 64, 4, 4, 8, False),
    "mistral": catalog.Architecture("mistral", 32, 2, 48, 64, 4, 2, 8, False),
}

# Settings each method needs on these shapes beyond its defaults (sizes that divide, token ids to train).
METHOD_SETTINGS = {
    "OFT": {"oft_block_size": 8},
    "BOFT": {"boft_block_size": 8},
    "TRAINABLE_TOKENS": {"token_indices": [1, 2, 3]},
}


def _real_model(arch: catalog.Architecture) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        arch.model_type, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers, intermediate_size=arch.intermediate_size,
        vocab_size=arch.vocab_size, num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads, head_dim=arch.head_dim,
        tie_word_embeddings=arch.tie_embeddings, max_position_embeddings=64, pad_token_id=0,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_architecture_shape_is_what_transformers_builds(family: str):
    """Every module the estimate lays out exists in the real model with the same kind, sizes and parameter count."""
    arch = FAMILIES[family]
    real = {m.name: m for m in describe_model(_real_model(arch)).modules}
    ours = architecture_shape(arch)
    for module in ours.modules:
        assert module.name in real, f"{family}: {module.name} is not in the real model"
        got = real[module.name]
        assert (module.kind, module.in_features, module.out_features, module.bias, module.numel) == (
            got.kind, got.in_features, got.out_features, got.bias, got.numel
        ), f"{family}: {module.name}"
    with_params = {n for n, m in real.items() if m.numel and "rotary" not in n}
    assert with_params <= {m.name for m in ours.modules}, f"{family}: modules missing from the layout: {sorted(with_params - {m.name for m in ours.modules})}"


def _method_cases() -> list:
    return [pytest.param(method, family, id=f"{method}-{family}") for method in registered_methods() for family in ("llama", "qwen2", "qwen3")]


@pytest.mark.parametrize(("method", "family"), _method_cases())
def test_every_method_gets_the_real_number(method: str, family: str):
    """What the summary shows before Start equals the trainable numel of the adapter the worker would build."""
    arch = FAMILIES[family]
    settings = {"peft_type": method, **METHOD_SETTINGS.get(method, {})}
    counted, _ = trainable_params(arch, settings)
    assert counted is not None, f"{method}: the New run summary would say 'not estimated'; implement trainable_parameter_count for it"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft_core.get_peft_model(_real_model(arch), method_config(settings, "CAUSAL_LM"))
    assert counted == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_the_summary_counts_methods_it_used_to_leave_out():
    for settings in ({"peft_type": "OFT", "oft_block_size": 8}, {"peft_type": "LOKR"}, {"peft_type": "LN_TUNING"},
                     {"peft_type": "BOFT"}, {"peft_type": "TRAINABLE_TOKENS", "token_indices": [5]}):
        est = estimate_run({"base_model": "demo", "method": settings}, dataset_rows=10)
        assert est.trainable_params and est.trainable_params > 0, settings
        assert est.adapter_state_bytes == est.trainable_params * 16
        assert not any("not estimated" in n for n in est.notes), est.notes


def test_invalid_method_settings_say_what_to_fix():
    est = estimate_run({"base_model": "demo", "method": {"peft_type": "OFT", "r": 8}}, dataset_rows=10)
    assert est.trainable_params is None
    assert any("Fix the method settings" in n and "oft_block_size" in n for n in est.notes), est.notes


def test_quantized_weights_match_what_the_h200_benchmark_measured():
    """Llama-3-8B's shape in 4-bit: the benchmark (bench/results/2026-11-28-h200-qlora-rerun) measured 3,489,660,928
    bytes of packed 4-bit weights and 1,050,939,392 fp32 parameters after prepare_model_for_kbit_training."""
    from app.services.estimate import _weights_bytes

    arch = catalog.Architecture("llama", 4096, 32, 14336, 128256, 32, 8, 128, False)
    linears = sum(fan_in * fan_out for _, fan_in, fan_out in arch.linear_modules())
    assert linears // 2 == 3_489_660_928 and arch.total_params() - linears == 1_050_939_392
    four, note = _weights_bytes(arch, "auto", "4bit-nf4")
    assert four == int(linears * 4.127 / 8) + 1_050_939_392 * 4 and "4bit-nf4" in note
    eight, _ = _weights_bytes(arch, "auto", "8bit")
    plain, none_note = _weights_bytes(arch, "auto", "none")
    assert four < eight < plain == arch.total_params() * 2 and none_note is None
    spec = {"base_model": "demo", "method": {"peft_type": "LORA"}, "training": {"quantization": "4bit-nf4"}}
    est = estimate_run(spec, dataset_rows=10)
    assert est.weights_bytes < estimate_run({**spec, "training": {}}, dataset_rows=10).weights_bytes
    assert any("4bit-nf4" in n for n in est.notes) and not any("Assumes bf16" in n for n in est.notes)
