"""The torch-free count (`config.trainable_parameter_count(shape)`) equals the real adapter's trainable numel.

Every registered method is checked, so a method added later fails here until its config implements the
protocol (peft_core/config.py): that is how the studio's pre-Start estimate stays complete. A method
without its own cases below is tried with its default config on the tiny Llama.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn as nn

import peft_core
from peft_core.describe import describe_model
from peft_core.registry import registered_methods
from peft_core.shapes import ModelShape, select_modules
from tests.peft_core import models
from tests.peft_core.tuners.test_target_parameters import MOE as _MOE
from tests.peft_core.tuners.test_target_parameters import Net

torch.set_num_threads(1)


@dataclass(frozen=True)
class Case:
    name: str
    model: Callable[[], nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _llama() -> nn.Module:
    return models.tiny_llama()


def _untied_llama() -> nn.Module:
    return models.tiny_llama(tie_word_embeddings=False)


MOE = {case[0]: case[1] for case in _MOE}  # tiny mixture-of-experts models, expert weights as raw parameters
LLAMA_ALL = {"task_type": "CAUSAL_LM", "target_modules": "all-linear"}

CASES: dict[str, list[Case]] = {
    "LORA": [
        Case("mlp-every-kind", models.MLP, {"target_modules": ["emb", "lin0", "conv", "head"], "r": 4}),
        Case("mlp-dora-lora_bias-patterns", models.MLP, {"target_modules": ["lin0", "conv", "head"], "lora_bias": True, "rank_pattern": {"conv": 2}}),
        Case("mlp-dora", models.MLP, {"target_modules": ["emb", "lin0", "conv"], "use_dora": True, "rank_pattern": {"^lin.*": 3}}),
        Case("convnet", models.ConvNet, {"target_modules": ["conv2d", "conv3d", "lin"], "r": 2, "bias": "lora_only"}),
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM"}),
        Case("llama-all-linear-bias-all", _llama, {**LLAMA_ALL, "bias": "all", "r": 3, "alpha_pattern": {"q_proj": 2}}),
        Case("llama-layers-exclude-save", _untied_llama, {**LLAMA_ALL, "layers_to_transform": [1], "exclude_modules": ["o_proj"], "modules_to_save": ["lm_head"]}),
        Case("llama-tokens-list", _llama, {"task_type": "CAUSAL_LM", "trainable_token_indices": [1, 5, 7]}),
        Case("llama-tokens-dict-untied", _untied_llama, {"task_type": "CAUSAL_LM", "trainable_token_indices": {"embed_tokens": [2, 3]}}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn", "c_fc"], "use_dora": True}),
        Case("bert-seq-cls-save", models.tiny_bert, {"task_type": "SEQ_CLS", "target_modules": ["query", "value"], "modules_to_save": ["classifier"]}),
        Case("qwen3-moe-expert-parameters", MOE["qwen3_moe"],
             {"target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], "r": 2, "rank_pattern": {"down_proj": 4}}),
        Case("gpt-oss-transposed-and-modules", MOE["gpt_oss-transposed"], {"target_modules": ["q_proj"], "target_parameters": ["mlp.experts.down_proj"]}),
        Case("custom-2d-3d-parameters-save", Net, {"target_parameters": ["alpha", "flat"], "modules_to_save": ["lin"]}),
    ],
    "LOHA": [
        Case("mlp", models.MLP, {"target_modules": ["lin0", "conv", "head"], "r": 3, "rank_pattern": {"head": 1}}),
        Case("convnet-effective-conv", models.ConvNet, {"target_modules": ["conv2d", "conv3d", "lin"], "use_effective_conv2d": True}),
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM"}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn", "c_proj"], "r": 2}),
    ],
    "LOKR": [
        Case("mlp", models.MLP, {"target_modules": ["lin0", "conv", "head"], "r": 2}),
        Case("mlp-decompose-both-factor", models.MLP, {"target_modules": ["lin0", "conv"], "r": 1, "decompose_both": True, "decompose_factor": 4}),
        Case("convnet-effective-conv", models.ConvNet, {"target_modules": ["conv2d", "conv3d"], "r": 1, "use_effective_conv2d": True}),
        Case("llama-all-linear-rank-pattern", _llama, {**LLAMA_ALL, "r": 4, "rank_pattern": {"down_proj": 16}, "rank_dropout": 0.5}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn", "c_fc"], "decompose_both": True, "r": 2}),
    ],
    "IA3": [
        Case("mlp", models.MLP, {"target_modules": ["lin0", "conv", "head"], "feedforward_modules": ["conv"]}),
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM"}),
        Case("gpt2-defaults-save", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "modules_to_save": ["ln_f"]}),
    ],
    "OFT": [
        Case("mlp-block-size", models.MLP, {"target_modules": ["lin0", "conv"], "oft_block_size": 4}),
        Case("mlp-r-adjusted", models.MLP, {"target_modules": ["lin0", "conv"], "r": 5, "oft_block_size": 0, "coft": True}),
        Case("convnet-block-share", models.ConvNet, {"target_modules": ["conv2d", "lin"], "oft_block_size": 3, "block_share": True}),
        Case("llama-all-linear-bias", _llama, {**LLAMA_ALL, "oft_block_size": 8, "bias": "oft_only"}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn"], "oft_block_size": 16}),
    ],
    "BOFT": [
        Case("mlp", models.MLP, {"target_modules": ["lin0"], "boft_block_size": 4, "boft_n_butterfly_factor": 2}),
        Case("mlp-block-num-conv", models.MLP, {"target_modules": ["lin0", "conv"], "boft_block_size": 0, "boft_block_num": 4, "bias": "all"}),
        Case("llama-defaults", _llama, {"task_type": "CAUSAL_LM", "boft_block_size": 8, "boft_n_butterfly_factor": 3}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn"], "boft_block_size": 8}),
    ],
    "LN_TUNING": [
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM"}),
        Case("gpt2-default-targets", models.tiny_gpt2, {"task_type": "CAUSAL_LM"}),
        Case("mlp-linear-as-module", models.MLP, {"target_modules": ["lin0"]}),
    ],
    "ADALORA": [
        Case("mlp-linear-conv", models.MLP, {"target_modules": ["lin0", "conv", "head"], "init_r": 6, "target_r": 2, "total_step": 20}),
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM", "total_step": 20}),
        Case("gpt2-conv1d", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "target_modules": ["c_attn", "c_fc"], "total_step": 20}),
    ],
    "VERA": [
        Case("mlp-linears", models.MLP, {"target_modules": ["lin0"], "r": 4, "bias": "vera_only"}),
        Case("llama-default-targets", _llama, {"task_type": "CAUSAL_LM", "r": 16}),
    ],
    "PROMPT_TUNING": [
        Case("llama", _llama, {"task_type": "CAUSAL_LM", "num_virtual_tokens": 5}),
        Case("bert-seq-cls-head", models.tiny_bert, {"task_type": "SEQ_CLS", "num_virtual_tokens": 3, "modules_to_save": ["classifier"]}),
    ],
    "PREFIX_TUNING": [
        Case("llama-gqa", _llama, {"task_type": "CAUSAL_LM", "num_virtual_tokens": 4}),
        Case("llama-head-dim-not-hidden-over-heads", lambda: models.tiny_llama(head_dim=16), {"task_type": "CAUSAL_LM", "num_virtual_tokens": 4}),
        Case("gpt2-projection", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "num_virtual_tokens": 3, "prefix_projection": True, "encoder_hidden_size": 8}),
    ],
    "P_TUNING": [
        Case("llama-mlp", _llama, {"task_type": "CAUSAL_LM", "num_virtual_tokens": 4, "encoder_hidden_size": 8}),
        Case("gpt2-lstm", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "num_virtual_tokens": 4, "encoder_reparameterization_type": "LSTM"}),
    ],
    "TRAINABLE_TOKENS": [
        Case("llama-tied-head", _llama, {"task_type": "CAUSAL_LM", "token_indices": [0, 3, 9]}),
        Case("llama-untied", _untied_llama, {"task_type": "CAUSAL_LM", "token_indices": [4, 5]}),
        Case("gpt2-named", models.tiny_gpt2, {"task_type": "CAUSAL_LM", "token_indices": [1], "target_modules": ["wte"]}),
        Case("mlp-named", models.MLP, {"target_modules": ["emb"], "token_indices": [2, 4, 6, 8]}),
    ],
}


def _cases() -> list[tuple[str, Case]]:
    out = []
    for method in registered_methods():
        for case in CASES.get(method, [Case("llama-default-config", _llama, {"task_type": "CAUSAL_LM"})]):
            out.append(pytest.param(method, case, id=f"{method}-{case.name}"))
    return out


def _real_trainable(model: nn.Module, config: peft_core.PeftConfig) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # adjusted block sizes and the like are expected here
        wrapped = peft_core.get_peft_model(model, config)
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


@pytest.mark.parametrize(("method", "case"), _cases())
def test_count_matches_real_adapter(method: str, case: Case) -> None:
    """Same config, same tiny model: the count from the shape alone equals the adapter's trainable numel."""
    spec = registered_methods()[method]
    try:
        config = spec.config_cls(**case.kwargs)
    except Exception as exc:  # a new method whose defaults need settings: it needs its own cases here
        pytest.fail(f"{method}: {spec.config_cls.__name__}(**{case.kwargs}) failed ({exc}); add cases for {method} to CASES in {__file__}")
    model = case.model()
    shape = describe_model(model)
    counted = config.trainable_parameter_count(shape)
    assert counted is not None, (
        f"{method}: {spec.config_cls.__name__}.trainable_parameter_count returned None for case {case.name!r}; "
        "implement the protocol in peft_core/config.py (module_parameter_count for layer methods, "
        "trainable_parameter_count for model-level ones) so the studio can estimate this method"
    )
    real = _real_trainable(model, spec.config_cls(**case.kwargs))
    assert counted == real, f"{method} {case.name}: counted {counted:,} trainable parameters, the real adapter has {real:,}"
    assert real > 0


def test_cases_name_only_registered_methods() -> None:
    """A typo in CASES would silently leave a method on the weak default case."""
    assert set(CASES) <= set(registered_methods()), f"CASES lists methods that are not registered: {sorted(set(CASES) - set(registered_methods()))}"


def test_counting_a_shape_needs_no_model() -> None:
    """The protocol runs on a hand-written shape (what the studio has): LoRA r=2 on one 4->6 linear, DoRA on."""
    from peft_core.shapes import ModuleShape

    shape = ModelShape(modules=(ModuleShape("block.proj", "linear", 4, 6, bias=6, numel=30), ModuleShape("block.norm", "module", numel=4)))
    assert peft_core.LoraConfig(target_modules=["proj"], r=2, use_dora=True).trainable_parameter_count(shape) == 2 * (4 + 6) + 6
    assert peft_core.LoraConfig(target_modules=["proj"], r=2, bias="all").trainable_parameter_count(shape) == 2 * (4 + 6) + 6
    assert peft_core.LNTuningConfig(target_modules=["norm"]).trainable_parameter_count(shape) == 4


def test_unknown_targets_give_no_number() -> None:
    """No target_modules and no default for the shape's model type: None (the studio says 'not estimated'), not a guess."""
    shape = ModelShape(modules=(), model_type="not-a-model")
    assert peft_core.LoraConfig().trainable_parameter_count(shape) is None
    assert peft_core.TrainableTokensConfig(token_indices=[1]).trainable_parameter_count(shape) is None
    net = describe_model(Net())
    assert peft_core.LoraConfig(target_parameters=["alpha", "no_such_weight"]).trainable_parameter_count(net) is None  # the engine refuses it
    assert peft_core.LoraConfig(target_modules=["no_such_module"]).trainable_parameter_count(net) is None


def test_shape_targeting_agrees_with_the_engine() -> None:
    """select_modules (torch-free) picks what peft_core.targeting.resolve_targets picks, all-linear and regex included."""
    from peft_core.targeting import resolve_targets

    model = models.tiny_llama()
    shape = describe_model(model)
    for kwargs in ({"target_modules": "all-linear"}, {"target_modules": r".*\.(q|v)_proj"}, {"target_modules": ["mlp"], "exclude_modules": ["mlp"]},
                   {"target_modules": ["up_proj"], "layers_to_transform": 0, "layers_pattern": "layers"}):
        config = peft_core.LoraConfig(**kwargs)
        try:
            expected = resolve_targets(config, model)
        except peft_core.NoMatchingModulesError:
            expected = []
        assert [m.name for m in select_modules(shape, config.target_modules, exclude=config.exclude_modules,
                                               layers_to_transform=config.layers_to_transform, layers_pattern=config.layers_pattern)] == expected
