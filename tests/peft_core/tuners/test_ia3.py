"""IA3 against the peft oracle (tests/peft_core/tuners/contract.py): outputs, checkpoints both ways,
merge, config JSON, training, two adapters; default targets per model type as peft picks them."""

from __future__ import annotations

import copy

import pytest
import torch

import peft_core
from peft_core.tuners.ia3 import IA3Config
from tests.peft_core import models
from tests.peft_core.oracle import peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, SEQ2SEQ, TOKENS, Case


def ia3(**kw) -> IA3Config:
    return IA3Config(init_ia3_weights=False, **kw)


CASES = [
    Case("mlp-linear-out-and-ff", models.MLP, IDS, ia3(target_modules=["lin0", "head"], feedforward_modules=["head"])),
    Case("convnet-conv2d-conv3d", models.ConvNet, IMAGES, ia3(target_modules=["conv2d", "conv3d", "lin"], feedforward_modules=["conv3d"])),
    Case("mlp-modules-to-save", models.MLP, IDS, ia3(target_modules=["lin0"], feedforward_modules=[], modules_to_save=["head"])),
    Case("llama-default-targets", models.tiny_llama, TOKENS, ia3(task_type="CAUSAL_LM")),
    Case("llama-regex", models.tiny_llama, TOKENS, ia3(target_modules=r".*\.(q_proj|up_proj|down_proj)", feedforward_modules=r".*down_proj")),
    Case("gpt2-conv1d-default", models.tiny_gpt2, TOKENS, ia3(task_type="CAUSAL_LM")),
    Case("bert-seq-cls-default", models.tiny_bert, TOKENS, ia3(task_type="SEQ_CLS")),
    Case("t5-seq2seq-default", models.tiny_t5, SEQ2SEQ, ia3(task_type="SEQ_2_SEQ_LM")),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=CASES[:2] + CASES[4:5])
)


@pytest.mark.oracle
@pytest.mark.parametrize("factory", [models.tiny_llama, models.tiny_gpt2, models.tiny_bert, models.tiny_t5])
def test_default_targets_and_feedforward_match_peft(factory):
    ours = peft_core.get_peft_model(factory(), IA3Config())
    theirs = peft.get_peft_model(factory(), peft.IA3Config())
    ours_cfg, their_cfg = ours.peft_config["default"], theirs.peft_config["default"]
    assert set(ours_cfg.target_modules) == set(their_cfg.target_modules)
    assert set(ours_cfg.feedforward_modules) == set(their_cfg.feedforward_modules)
    assert sorted(peft_core.get_peft_model_state_dict(ours)) == sorted(peft.get_peft_model_state_dict(theirs))


def test_feedforward_must_be_targets():
    with pytest.raises(peft_core.ConfigError, match=r"feedforward_modules: \['c_fc'\] are not in target_modules"):
        IA3Config(target_modules=["c_attn"], feedforward_modules=["c_fc"])


def test_feedforward_without_default_names_the_field():
    with pytest.raises(peft_core.ConfigError, match="feedforward_modules: not set, and there is no default for model type None"):
        peft_core.get_peft_model(models.MLP(), IA3Config(target_modules=["lin0"]))


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), IA3Config(task_type="CAUSAL_LM", target_modules="all-linear", feedforward_modules=["down_proj"]))
    contract.check_training(model, lr=5e-2)


@pytest.mark.oracle
def test_two_adapters():
    case = CASES[3]
    contract.check_two_adapters(case, ia3(task_type="CAUSAL_LM", target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"]))


def test_unmerge_restores_weights_and_bias():
    model = peft_core.get_peft_model(models.MLP(), ia3(target_modules=["lin0", "head"], feedforward_modules=["head"]))
    before = copy.deepcopy(model.base_model.model.state_dict())
    model.merge_adapter()
    lin0 = model.base_model.model.lin0
    assert not torch.allclose(lin0.base_layer.bias, before["lin0.base_layer.bias"])  # output scaling scales the bias
    model.unmerge_adapter()
    for key, value in model.base_model.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=1e-6, atol=1e-6)


BEYOND_PEFT = [Case("mlp-conv1d", models.MLP, IDS, ia3(target_modules=["conv", "lin0"], feedforward_modules=["conv"]))]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's IA3 refuses nn.Conv1d; ours adapts every convolution through the same code."""
    contract.check_beyond_peft(case, tmp_path)
