"""LN tuning against the peft oracle (tests/peft_core/tuners/contract.py). The tuned copies start equal
to the originals, so the cases write random values into them."""

from __future__ import annotations

import pytest
import torch

import peft_core
from peft_core.tuners.ln_tuning import LNTuningConfig
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft
from tests.peft_core.tuners import contract
from tests.peft_core.tuners.contract import IDS, SEQ2SEQ, TOKENS, Case

CASES = [
    Case("llama-rmsnorm-default", models.tiny_llama, TOKENS, LNTuningConfig(task_type="CAUSAL_LM"), randomize=True),
    Case("gpt2-layernorm-default", models.tiny_gpt2, TOKENS, LNTuningConfig(task_type="CAUSAL_LM"), randomize=True),
    Case("t5-default", models.tiny_t5, SEQ2SEQ, LNTuningConfig(task_type="SEQ_2_SEQ_LM"), randomize=True),
    Case("bert-seq-cls", models.tiny_bert, TOKENS, LNTuningConfig(task_type="SEQ_CLS", target_modules=["LayerNorm"]), randomize=True),
    Case("mlp-any-module", models.MLP, IDS, LNTuningConfig(target_modules=["lin0", "conv"], modules_to_save=["head"]), randomize=True),
]


test_outputs_match_peft, test_checkpoints_load_both_ways, test_merge_keeps_outputs, test_config_json_round_trips = (
    contract.standard_tests(CASES, round_trip=[CASES[-1]])
)


@pytest.mark.oracle
@pytest.mark.parametrize("factory", [models.tiny_llama, models.tiny_gpt2, models.tiny_t5])
def test_default_targets_match_peft(factory):
    ours = peft_core.get_peft_model(factory(), LNTuningConfig())
    theirs = peft.get_peft_model(factory(), peft.LNTuningConfig())
    assert set(ours.peft_config["default"].target_modules) == set(theirs.peft_config["default"].target_modules)
    assert sorted(peft_core.get_peft_model_state_dict(ours)) == sorted(peft.get_peft_model_state_dict(theirs))


def test_training_changes_only_adapter_and_lowers_loss():
    model = peft_core.get_peft_model(models.tiny_llama(), LNTuningConfig(task_type="CAUSAL_LM"))
    contract.check_training(model, lr=5e-2)


@pytest.mark.oracle
def test_two_adapters():
    contract.check_two_adapters(CASES[0], LNTuningConfig(task_type="CAUSAL_LM"))  # peft fails when the targets differ


def test_one_active_adapter_at_a_time():
    model = peft_core.get_peft_model(models.tiny_llama(), LNTuningConfig(task_type="CAUSAL_LM"))
    model.add_adapter("other", LNTuningConfig(task_type="CAUSAL_LM"))
    model.base_model.set_adapter(["default", "other"])
    with pytest.raises(peft_core.MergeError, match="one adapter at a time"):
        model(**TOKENS)


def test_copy_keeps_the_base_dtype_like_peft():
    model = peft_core.get_peft_model(models.tiny_llama().to(torch.bfloat16), LNTuningConfig(task_type="CAUSAL_LM"))
    layer = model.base_model.model.model.layers[0].input_layernorm
    assert layer.ln_tuning_layers["default"].weight.dtype == torch.bfloat16
    assert torch.isfinite(model(**TOKENS).logits).all()


def test_merge_and_unload_leaves_the_tuned_module():
    model = peft_core.get_peft_model(models.tiny_llama(), LNTuningConfig(task_type="CAUSAL_LM"))
    contract.randomize_adapter(model)
    tuned = model.base_model.model.model.norm.ln_tuning_layers["default"]
    merged = model.merge_and_unload()
    assert merged.model.norm is tuned


def test_adapters_on_different_targets():
    """Where the active adapter has no copy the frozen module runs (peft's forward fails here)."""
    base = models.tiny_llama()
    model = peft_core.get_peft_model(base, LNTuningConfig(task_type="CAUSAL_LM"))
    model.add_adapter("other", LNTuningConfig(task_type="CAUSAL_LM", target_modules=["norm"]))
    contract.randomize_adapter(model, "other")
    model.set_adapter("other")
    only_other = peft_core.get_peft_model(models.tiny_llama(), LNTuningConfig(task_type="CAUSAL_LM", target_modules=["norm"]))
    peft_core.set_peft_model_state_dict(only_other, peft_core.get_peft_model_state_dict(model, adapter_name="other"))
    torch.testing.assert_close(outputs(model.eval(), TOKENS), outputs(only_other.eval(), TOKENS))
