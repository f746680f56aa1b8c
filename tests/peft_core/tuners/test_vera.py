"""VeRA against the peft oracle (tests/peft_core/tuners/contract.py): outputs, checkpoints both ways with
the projections saved or regenerated from the seed, merge, config JSON, training, two adapters."""

from __future__ import annotations

import copy

import pytest
import torch

import peft_core
from peft_core.tuners.vera import VeraConfig
from tests.peft_core import models
from tests.peft_core.oracle import oracle_config, outputs, peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, SEQ2SEQ, TOKENS, Case


def vera(**kw) -> VeraConfig:
    return VeraConfig(**{"init_weights": False, "r": 8, **kw})


CASES = [
    Case("mlp-linear-two-shapes", models.MLP, IDS, vera(target_modules=["lin0", "head"])),
    Case("llama-default-targets", models.tiny_llama, TOKENS, vera(task_type="CAUSAL_LM", r=16)),
    Case("llama-all-linear-no-saved-projection", models.tiny_llama, TOKENS, vera(target_modules="all-linear", save_projection=False, projection_prng_key=7)),
    Case("gpt2-conv1d-bias", models.tiny_gpt2, TOKENS, vera(task_type="CAUSAL_LM", bias="vera_only")),
    Case("t5-seq2seq", models.tiny_t5, SEQ2SEQ, vera(task_type="SEQ_2_SEQ_LM", modules_to_save=["lm_head"])),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, vera(task_type="SEQ_CLS")),
]

test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[0], CASES[2], CASES[3]])
)


@pytest.mark.oracle
@pytest.mark.parametrize("save_projection", [True, False])
def test_projections_are_peft_s_from_the_seed(save_projection):
    """Fresh models (no weights copied) hold peft's projections: same seed, same largest shape, same draw order."""
    config = VeraConfig(target_modules=["q_proj", "up_proj", "down_proj"], r=12, projection_prng_key=3, save_projection=save_projection)
    ours = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(config))
    theirs = peft.get_peft_model(models.tiny_llama(), oracle_config(config))
    for name in ("vera_A", "vera_B"):
        torch.testing.assert_close(getattr(ours.base_model, name).tensor("default"), getattr(theirs.base_model, name)["default"], rtol=0, atol=0)
    saved = peft_core.get_peft_model_state_dict(ours)
    assert ("base_model.vera_A" in saved) is save_projection
    assert sorted(saved) == sorted(peft.get_peft_model_state_dict(theirs))


def test_training_changes_only_lambdas_and_lowers_loss():
    # projections not saved, so the adapter's tensors are exactly the trained ones (check_training compares them)
    config = VeraConfig(task_type="CAUSAL_LM", target_modules="all-linear", r=16, save_projection=False)
    model = peft_core.get_peft_model(models.tiny_llama(), config)
    before = model.base_model.vera_A.tensor("default").clone()
    contract.check_training(model, lr=5e-2)
    assert torch.equal(model.base_model.vera_A.tensor("default"), before)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[1], vera(task_type="CAUSAL_LM", r=16, target_modules=["q_proj", "v_proj", "o_proj"]))


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (dict(projection_prng_key=1), "projection_prng_key: adapter 'default' uses 0"),
        (dict(save_projection=False), "save_projection: adapter 'default' uses True"),
        (dict(r=4), "r: adapter 'default' uses r=8"),
    ],
)
def test_second_adapter_must_share_the_projections(second, message):
    model = peft_core.get_peft_model(models.MLP(), vera(target_modules=["lin0"]))
    with pytest.raises(peft_core.ConfigError, match=message):
        model.add_adapter("other", vera(target_modules=["lin0"], **second))
    assert list(model.peft_config) == ["default"] and list(model.base_model.vera_A.adapter_names) == ["default"]


def test_only_linear_layers():
    with pytest.raises(peft_core.UnsupportedLayerError, match="VERA cannot adapt 'conv'.*kind: linear"):
        peft_core.get_peft_model(models.MLP(), vera(target_modules=["lin0", "conv"]))


def test_nothing_linear_targeted_names_the_field():
    with pytest.raises(peft_core.ConfigError, match="target_modules: no Linear or Conv1D layer matched"):
        peft_core.get_peft_model(models.MLP(), vera(target_modules=["emb"]))


def test_regenerated_projection_checkpoint_reloads(tmp_path):
    case = CASES[2]
    model = contract.ours_model(case)
    expected = outputs(model, case.inputs)
    model.save_pretrained(tmp_path)
    loaded = peft_core.PeftModel.from_pretrained(case.factory(), tmp_path)
    torch.testing.assert_close(outputs(loaded, case.inputs), expected, **contract.TOL)


def test_later_adapter_with_larger_layers_is_refused_before_injection():
    model = peft_core.get_peft_model(models.MLP(), vera(target_modules=["head"]))
    with pytest.raises(peft_core.ConfigError, match=r"adapts layers up to \(16, 16\) but the shared projections cover \(3, 8\)"):
        model.add_adapter("other", vera(target_modules=["lin0"]))
    assert not isinstance(model.base_model.model.lin0, peft_core.layer.AdapterLayer)


@pytest.mark.parametrize(
    ("factory", "kw"),
    [
        (models.MLP, dict(target_modules=["lin0", "head"])),
        (models.tiny_llama, dict(task_type="CAUSAL_LM", target_modules="all-linear", bias="vera_only")),
        (models.tiny_gpt2, dict(task_type="CAUSAL_LM", save_projection=False)),
        (models.tiny_bert, dict(task_type="SEQ_CLS", target_modules=["query", "value"], modules_to_save=["classifier"])),
    ],
    ids=["mlp", "llama-all-linear-bias", "gpt2-default", "bert-save-classifier"],
)
def test_parameter_count_from_the_shape_equals_the_real_adapter(factory, kw):
    from peft_core.describe import describe_model

    counted = vera(**kw).trainable_parameter_count(describe_model(factory()))
    model = peft_core.get_peft_model(factory(), vera(**kw))
    assert counted == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_deleting_an_adapter_drops_its_projections_and_keeps_the_other_s():
    model = peft_core.get_peft_model(models.MLP(), vera(target_modules=["lin0", "head"]))
    model.add_adapter("other", vera(target_modules=["lin0"]))
    kept = model.base_model.vera_A.tensor("default").clone()
    model.delete_adapter("other")
    assert model.base_model.vera_A.adapter_names == ["default"] and model.base_model.vera_B.adapter_names == ["default"]
    assert "base_model.vera_A.other" not in dict(model.named_buffers())
    torch.testing.assert_close(model.base_model.vera_A.tensor("default"), kept)
    assert sorted(peft_core.get_peft_model_state_dict(model)) == [
        "base_model.model.head.vera_lambda_b", "base_model.model.head.vera_lambda_d",
        "base_model.model.lin0.vera_lambda_b", "base_model.model.lin0.vera_lambda_d", "base_model.vera_A", "base_model.vera_B",
    ]
