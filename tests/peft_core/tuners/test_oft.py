"""OFT against the peft oracle (tests/peft_core/tuners/contract.py): exact and Neumann Cayley transforms,
block sharing, COFT, adjusted block sizes, Linear (input rotation), Conv2d (rotated weight) and Embedding
(rotated rows, saved as oft_embedding_R).

peft 0.21.2's Conv2d forward does not equal its own merged weights; ours computes W·R for both, so
conv cases compare with peft's merged model (docs/tuners.md)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import peft_core
from peft_core.tuners.oft import OFTConfig, nearest_divisor
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, TOKENS, Case


def oft(**kw) -> OFTConfig:
    return OFTConfig(**{"init_weights": False, **kw})


CASES = [
    Case("mlp-neumann", models.MLP, IDS, oft(target_modules=["lin0"], oft_block_size=4)),
    Case("mlp-exact-cayley", models.MLP, IDS, oft(target_modules=["lin0", "head"], oft_block_size=4, use_cayley_neumann=False)),
    Case("mlp-r-block-share-3-terms", models.MLP, IDS, oft(target_modules=["lin0"], r=2, oft_block_size=0, block_share=True, num_cayley_neumann_terms=3)),
    Case("mlp-coft", models.MLP, IDS, oft(target_modules=["lin0"], oft_block_size=4, coft=True, eps=0.05)),
    Case("convnet-conv2d", models.ConvNet, IMAGES, oft(target_modules=["conv2d"], oft_block_size=9), peft_merged_reference=True),
    Case("llama-all-linear-bias", models.tiny_llama, TOKENS, oft(target_modules="all-linear", oft_block_size=8, bias="oft_only")),
    Case("llama-default-targets", models.tiny_llama, TOKENS, oft(task_type="CAUSAL_LM", modules_to_save=["lm_head"])),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, oft(task_type="SEQ_CLS", oft_block_size=16, use_cayley_neumann=False)),
    Case("mlp-embedding-and-linear", models.MLP, IDS, oft(target_modules=["emb", "lin0"], oft_block_size=4)),
    Case("llama-embed-tokens-exact-shared", models.tiny_llama, TOKENS, oft(target_modules=["embed_tokens"], r=4, oft_block_size=0, block_share=True, use_cayley_neumann=False)),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[2], CASES[5]])
)


@pytest.mark.oracle
@pytest.mark.parametrize("kw", [dict(oft_block_size=3), dict(oft_block_size=5), dict(r=3, oft_block_size=0)], ids=str)
def test_block_size_is_adjusted_like_peft(kw):
    with pytest.warns(UserWarning, match="Adjusted"):
        ours = peft_core.get_peft_model(models.MLP(), OFTConfig(target_modules=["lin0"], **kw))
    theirs = peft.get_peft_model(models.MLP(), peft.OFTConfig(target_modules=["lin0"], **kw))
    shapes = {k: tuple(v.shape) for k, v in peft_core.get_peft_model_state_dict(ours).items()}
    assert shapes == {k: tuple(v.shape) for k, v in peft.get_peft_model_state_dict(theirs).items()}


def test_r_and_block_size_are_exclusive():
    with pytest.raises(peft_core.ConfigError, match="set either r"):
        OFTConfig(r=2, oft_block_size=4)
    with pytest.raises(peft_core.ConfigError, match="both are 0"):
        OFTConfig(r=0, oft_block_size=0)


def test_coft_keeps_rotations_near_the_identity():
    model = peft_core.get_peft_model(models.MLP(), oft(target_modules=["lin0"], oft_block_size=4, coft=True, eps=1e-3))
    model(IDS)
    skew = model.base_model.model.lin0.oft_R["default"].skew()
    assert skew.flatten(1).norm(dim=1).max() <= 1e-3 / 2**0.5 + 1e-7  # eps / sqrt(4 blocks)


def test_module_dropout_drops_blocks_in_training():
    """peft 0.21.2 accepts module_dropout but its OFT forward ignores it; ours replaces blocks by the identity."""
    model = peft_core.get_peft_model(models.MLP(), oft(target_modules=["lin0"], oft_block_size=4, module_dropout=0.5)).train()
    expected = outputs(model.eval(), IDS)
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(outputs(model, IDS), expected)
    layer = model.base_model.model.lin0
    torch.manual_seed(0)
    blocks = layer.rotation("default", dropout=True)
    eye = torch.eye(4)
    assert sum(torch.equal(b, eye) for b in blocks) == 2


def test_rotation_keeps_weight_norms():
    model = peft_core.get_peft_model(models.tiny_llama(), oft(target_modules=["q_proj"], oft_block_size=8, use_cayley_neumann=False))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    weight = layer.view.get_weight()
    rotated = layer.merged_weight("default", weight)
    torch.testing.assert_close(rotated.norm(dim=1), weight.norm(dim=1))


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), OFTConfig(target_modules="all-linear", oft_block_size=8, task_type="CAUSAL_LM"))
    contract.check_training(model)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[5], oft(target_modules=["q_proj", "down_proj"], oft_block_size=4))


@pytest.mark.oracle
def test_saved_config_states_the_peft_format_version(tmp_path):
    """peft parses `peft_version` when it loads OFT (a null one fails, one before 0.18 warns about the
    Neumann series), so a config of ours says which peft format it follows."""
    model = peft_core.get_peft_model(models.MLP(), oft(target_modules=["lin0"], oft_block_size=4))
    model.save_pretrained(tmp_path)
    version = json.loads((tmp_path / "adapter_config.json").read_text())["peft_version"]
    assert version == f"0.21.2+peftcore.{peft_core.__version__}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        peft.PeftModel.from_pretrained(models.MLP(), tmp_path)


BEYOND_PEFT = [
    Case("gpt2-conv1d-transformers", models.tiny_gpt2, TOKENS, oft(target_modules=["c_attn", "c_fc"], oft_block_size=8)),
    Case("mlp-conv1d", models.MLP, IDS, oft(target_modules=["conv"], oft_block_size=8)),
    Case("convnet-conv3d", models.ConvNet, IMAGES, oft(target_modules=["conv3d"], oft_block_size=9)),
]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's OFT refuses GPT-2's Conv1D; Conv1d and Conv3d go through the same rotated-weight path as Conv2d."""
    contract.check_beyond_peft(case, tmp_path)


def test_merge_ignores_dropout_while_training():
    model = peft_core.get_peft_model(models.MLP(), oft(target_modules=["lin0"], oft_block_size=4, module_dropout=0.5)).train()
    layer = model.base_model.model.lin0
    before = layer.base_layer.weight.detach().clone()
    expected = layer.rotate_weight("default", before)
    model.merge_adapter()
    torch.testing.assert_close(layer.base_layer.weight, expected)
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.weight, before, rtol=1e-5, atol=1e-6)


@pytest.mark.oracle
def test_two_adapters_on_an_embedding():
    contract.check_two_adapters(CASES[8], oft(target_modules=["emb"], oft_block_size=8, use_cayley_neumann=False))


def test_embedding_rows_keep_their_norms_and_module_dropout_is_ignored_as_in_peft():
    model = peft_core.get_peft_model(models.MLP(), oft(target_modules=["emb"], oft_block_size=4, module_dropout=0.5, use_cayley_neumann=False)).train()
    emb = model.base_model.model.emb
    rows = emb(IDS)
    torch.testing.assert_close(rows.norm(dim=-1), emb.base_layer(IDS).norm(dim=-1))
    torch.manual_seed(0)
    first = emb(IDS)
    torch.manual_seed(1)
    torch.testing.assert_close(emb(IDS), first)


def test_nearest_divisor_moves_a_size_to_the_closest_divisor_the_smaller_on_a_tie():
    assert nearest_divisor(16, 4) == 4  # a divisor stays
    assert nearest_divisor(12, 5) == 4  # 4 and 6 are as close: the smaller
    assert nearest_divisor(7, 4) == 1  # 1 and 7 are as close
    assert nearest_divisor(30, 4) == 3  # 3 and 5 are as close
    assert nearest_divisor(768, 100) == 96
    assert nearest_divisor(10, 64) == 10
