"""LoKr against the peft oracle (tests/peft_core/tuners/contract.py): the size factorisation, full and
rank-r factors, decompose_both, effective (Tucker) convolutions, training-time dropouts like peft's."""

from __future__ import annotations

import pytest
import torch

import peft_core
from peft_core.tuners.lokr import LoKrConfig, factorize
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, IMAGES, TOKENS, Case


def lokr(**kw) -> LoKrConfig:
    return LoKrConfig(**{"alpha": 8, "init_weights": False, **kw})


CASES = [
    Case("mlp-full-factors-conv1d", models.MLP, IDS, lokr(target_modules=["lin0", "conv"], r=8)),
    Case("mlp-rank1-factors", models.MLP, IDS, lokr(target_modules=["lin0", "conv"], r=1, decompose_both=True)),
    Case("convnet-conv2d", models.ConvNet, IMAGES, lokr(target_modules=["conv2d", "lin"], r=1, decompose_factor=2)),
    Case("convnet-effective-conv2d", models.ConvNet, IMAGES, lokr(target_modules=["conv2d", "lin"], r=1, use_effective_conv2d=True, decompose_both=True)),
    Case("llama-default-targets", models.tiny_llama, TOKENS, lokr(task_type="CAUSAL_LM", r=2)),
    Case("llama-all-linear-factor", models.tiny_llama, TOKENS, lokr(target_modules="all-linear", r=1, decompose_both=True, decompose_factor=4)),
    Case("bert-seq-cls-patterns", models.tiny_bert, TOKENS, lokr(task_type="SEQ_CLS", r=4, rank_pattern={"value": 1}, alpha_pattern={"query": 3})),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[2], CASES[5]])
)


@pytest.mark.oracle
@pytest.mark.parametrize("sizes", [(6, 5), (8, 12), (12, 30), (7, 49), (64, 36)])
@pytest.mark.parametrize("factor", [-1, 2, 3, 4])
def test_factor_shapes_match_peft(sizes, factor):
    """Which factors exist and their shapes (the size factorisation) equal peft's, over ranks and flags."""
    in_f, out_f = sizes
    for r in (1, 2, 8):
        for decompose_both in (False, True):
            kw = dict(target_modules=["0"], r=r, decompose_both=decompose_both, decompose_factor=factor)
            ours = peft_core.get_peft_model(torch.nn.Sequential(torch.nn.Linear(in_f, out_f)), LoKrConfig(**kw))
            theirs = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(in_f, out_f)), peft.LoKrConfig(**kw))
            shapes = {k: tuple(v.shape) for k, v in peft_core.get_peft_model_state_dict(ours).items()}
            assert shapes == {k: tuple(v.shape) for k, v in peft.get_peft_model_state_dict(theirs).items()}, (r, decompose_both)


def test_factorize():
    assert factorize(12) == (3, 4)
    assert factorize(12, 4) == (4, 3)  # a dividing factor is kept as given
    assert factorize(30, 4) == (3, 10)
    assert factorize(7) == (1, 7)
    assert factorize(4096) == (64, 64)
    for size in range(1, 200):  # always a split of the size, the smaller side first unless a dividing factor was given
        for factor in (-1, 2, 3, 5, 8):
            m, n = factorize(size, factor)
            assert m * n == size and (m <= n or factor == m)


@pytest.mark.oracle
@pytest.mark.parametrize("scale", [False, True])
def test_dropouts_match_peft_in_training(scale):
    config = lokr(target_modules="all-linear", r=2, rank_dropout=0.3, module_dropout=0.3, rank_dropout_scale=scale)
    contract.check_seeded_training_matches_peft(Case("llama-dropouts", models.tiny_llama, TOKENS, config))


@pytest.mark.parametrize("init", [True, "lycoris"])
def test_default_init_is_the_identity(init):
    base = models.tiny_llama()
    expected = outputs(base, TOKENS)
    model = peft_core.get_peft_model(base, LoKrConfig(target_modules="all-linear", r=1, decompose_both=True, init_weights=init))
    torch.testing.assert_close(outputs(model, TOKENS), expected)


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), LoKrConfig(r=2, alpha=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    contract.check_training(model)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[4], lokr(task_type="CAUSAL_LM", target_modules=["q_proj", "down_proj"], r=1))


def test_effective_conv1d_works_where_peft_fails():
    """peft 0.21.2 cannot run an effective (Tucker) LoKr on a Conv1d (a view error in its Kronecker product)."""
    model = peft_core.get_peft_model(models.MLP(), lokr(target_modules=["conv"], r=1, use_effective_conv2d=True))
    assert "conv.lokr_t2" in "".join(peft_core.get_peft_model_state_dict(model))
    expected = outputs(model, IDS)
    torch.testing.assert_close(outputs(model.merge_and_unload(), IDS), expected, **contract.MERGE_TOL)


BEYOND_PEFT = [
    Case("gpt2-conv1d-transformers", models.tiny_gpt2, TOKENS, lokr(target_modules=["c_attn", "c_fc"], r=2)),
    Case("convnet-conv3d", models.ConvNet, IMAGES, lokr(target_modules=["conv3d"], r=1, use_effective_conv2d=True)),
    Case("mlp-effective-conv1d", models.MLP, IDS, lokr(target_modules=["conv"], r=1, use_effective_conv2d=True)),
]


@pytest.mark.parametrize("case", BEYOND_PEFT, ids=str)
def test_layers_beyond_peft(case, tmp_path):
    """peft's LoKr refuses GPT-2's Conv1D and Conv3d, and fails on an effective (Tucker) Conv1d (a view
    error in its Kronecker product); ours adapts them through the base-layer views."""
    contract.check_beyond_peft(case, tmp_path)
