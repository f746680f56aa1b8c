"""BOFT against the peft oracle (tests/peft_core/tuners/contract.py): block size or count, learned output
scale, Linear and Conv2d, bias, multiplicative dropout drawn like peft's. peft 0.21.2 always builds one
butterfly factor; more factors are checked on their own (orthogonal, merge-consistent, loadable)."""

from __future__ import annotations

import pytest
import torch

import peft_core
from peft_core.tuners.boft import BOFTConfig
from tests.peft_core import models
from tests.peft_core.oracle import outputs
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, TOKENS, Case


def boft(**kw) -> BOFTConfig:
    return BOFTConfig(**{"init_weights": False, **kw})


CASES = [
    Case("mlp-block-size", models.MLP, IDS, boft(target_modules=["lin0"], boft_block_size=4)),
    Case("mlp-block-num-bias", models.MLP, IDS, boft(target_modules=["lin0"], boft_block_size=0, boft_block_num=2, bias="boft_only")),
    Case("convnet-conv2d", models.ConvNet, IMAGES, boft(target_modules=["conv2d"], boft_block_size=9)),
    Case("convnet-linear-modules-to-save", models.ConvNet, IMAGES, boft(target_modules=["lin"], boft_block_size=2, modules_to_save=["conv3d"])),
    Case("llama-all-linear", models.tiny_llama, TOKENS, boft(target_modules="all-linear", boft_block_size=8)),
    Case("llama-default-targets", models.tiny_llama, TOKENS, boft(task_type="CAUSAL_LM")),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, boft(task_type="SEQ_CLS", boft_block_num=4, boft_block_size=0)),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[1], CASES[6]])
)


@pytest.mark.oracle
def test_dropout_matches_peft_in_training():
    contract.check_seeded_training_matches_peft(
        Case("llama-dropout", models.tiny_llama, TOKENS, boft(target_modules="all-linear", boft_block_size=4, boft_dropout=0.5))
    )


def test_block_settings_are_checked():
    with pytest.raises(peft_core.ConfigError, match="set either boft_block_size"):
        BOFTConfig(boft_block_size=4, boft_block_num=2)
    with pytest.raises(peft_core.ConfigError, match="boft_block_size: 3 does not divide the input size 16 of lin0"):
        peft_core.get_peft_model(models.MLP(), BOFTConfig(target_modules=["lin0"], boft_block_size=3))
    with pytest.raises(peft_core.ConfigError, match="boft_n_butterfly_factor: 4 factors"):
        peft_core.get_peft_model(models.MLP(), BOFTConfig(target_modules=["lin0"], boft_block_size=4, boft_n_butterfly_factor=4))


def test_butterfly_factors_mix_wider_groups(tmp_path):
    """Three factors of 2x2 blocks: an orthogonal rotation in which each input reaches 2^3 outputs."""
    config = boft(target_modules=["q_proj", "v_proj"], boft_block_size=2, boft_n_butterfly_factor=3)
    model = peft_core.get_peft_model(models.tiny_llama(), config).eval()
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert tuple(layer.boft_R["default"].shape) == (3, 16, 2, 2)
    rotation = layer.rotate_rows(torch.eye(32), "default")
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(32), rtol=0, atol=1e-5)
    assert ((rotation.abs() > 1e-9).sum(dim=1) == 8).all()
    expected = outputs(model, TOKENS)
    model.save_pretrained(tmp_path)
    loaded = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path)
    torch.testing.assert_close(outputs(loaded, TOKENS), expected)
    torch.testing.assert_close(outputs(model.merge_and_unload(), TOKENS), expected, **contract.MERGE_TOL)


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), BOFTConfig(target_modules="all-linear", boft_block_size=8, task_type="CAUSAL_LM"))
    contract.check_training(model)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[4], boft(target_modules=["q_proj", "down_proj"], boft_block_size=4))


BEYOND_PEFT = [
    Case("gpt2-conv1d-transformers", models.tiny_gpt2, TOKENS, boft(target_modules=["c_attn", "c_fc"], boft_block_size=8)),
    Case("mlp-conv1d", models.MLP, IDS, boft(target_modules=["conv"], boft_block_size=8)),
    Case("convnet-conv3d", models.ConvNet, IMAGES, boft(target_modules=["conv3d"], boft_block_size=9)),
]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's BOFT refuses GPT-2's Conv1D; Conv1d and Conv3d go through the same rotated-weight path as Conv2d."""
    contract.check_beyond_peft(case, tmp_path)
