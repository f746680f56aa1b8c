"""LoHa against the peft oracle (tests/peft_core/tuners/contract.py): Linear, Conv1d, Conv2d, effective
(Tucker) convolutions, rank/alpha patterns, training-time dropouts drawn like peft's."""

from __future__ import annotations

import pytest
import torch

import peft_core
from peft_core.tuners.loha import LoHaConfig
from tests.peft_core import models
from tests.peft_core.oracle import outputs
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, TOKENS, Case


def loha(**kw) -> LoHaConfig:
    return LoHaConfig(**{"r": 4, "alpha": 8, "init_weights": False, **kw})


CASES = [
    Case("mlp-linear-conv1d-patterns", models.MLP, IDS, loha(target_modules=["lin0", "conv"], r=3, alpha=5, rank_pattern={"conv": 2}, alpha_pattern={"lin0": 7})),
    Case("mlp-effective-conv1d", models.MLP, IDS, loha(target_modules=["lin0", "conv"], use_effective_conv2d=True)),
    Case("convnet-conv2d", models.ConvNet, IMAGES, loha(target_modules=["conv2d", "lin"], r=2)),
    Case("convnet-effective-conv2d", models.ConvNet, IMAGES, loha(target_modules=["conv2d", "lin"], r=2, use_effective_conv2d=True)),
    Case("mlp-modules-to-save", models.MLP, IDS, loha(target_modules=["lin0"], modules_to_save=["head"])),
    Case("llama-default-targets", models.tiny_llama, TOKENS, loha(task_type="CAUSAL_LM")),
    Case("llama-layers-to-transform", models.tiny_llama, TOKENS, loha(target_modules=["q_proj", "gate_proj", "down_proj"], layers_to_transform=[1], layers_pattern="layers")),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, loha(task_type="SEQ_CLS")),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[0], CASES[6]])
)


@pytest.mark.oracle
def test_dropouts_match_peft_in_training():
    """Seeded training-mode forwards draw module and rank dropout exactly like peft."""
    contract.check_seeded_training_matches_peft(
        Case("llama-dropouts", models.tiny_llama, TOKENS, loha(target_modules="all-linear", rank_dropout=0.3, module_dropout=0.3))
    )


@pytest.mark.parametrize("init", [True, "lycoris"])
def test_default_init_is_the_identity(init):
    base = models.tiny_llama()
    expected = outputs(base, TOKENS)
    model = peft_core.get_peft_model(base, LoHaConfig(target_modules="all-linear", init_weights=init))
    torch.testing.assert_close(outputs(model, TOKENS), expected)


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), LoHaConfig(r=4, alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    contract.check_training(model)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[5], loha(task_type="CAUSAL_LM", target_modules=["q_proj", "down_proj"], r=2))


def test_conv3d_works_beyond_peft():
    """peft's LoHa refuses Conv3d; ours adapts any convolution through the same code."""
    model = peft_core.get_peft_model(models.ConvNet(), loha(target_modules=["conv3d"], use_effective_conv2d=True))
    expected = outputs(model, IMAGES)
    torch.testing.assert_close(outputs(model.merge_and_unload(), IMAGES), expected, **contract.MERGE_TOL)


BEYOND_PEFT = [
    Case("gpt2-conv1d-transformers", models.tiny_gpt2, TOKENS, loha(target_modules=["c_attn", "c_fc"])),
    Case("convnet-conv3d", models.ConvNet, IMAGES, loha(target_modules=["conv3d"], use_effective_conv2d=True)),
]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's LoHa refuses GPT-2's Conv1D and Conv3d; ours adapts them through the base-layer views."""
    contract.check_beyond_peft(case, tmp_path)


def test_rank_dropout_of_every_row_gives_a_zero_update():
    """peft divides by the kept fraction even when nothing is kept (NaN); ours adds nothing."""
    base = models.MLP()
    expected = outputs(base, IDS)
    model = peft_core.get_peft_model(base, loha(target_modules=["lin0"], rank_dropout=1.0)).train()
    torch.testing.assert_close(model(IDS), expected)
