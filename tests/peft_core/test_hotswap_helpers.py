"""hotswap_adapter and rescale_adapter_scale, against the peft oracle."""

from __future__ import annotations

import copy

import pytest
import torch

import peft_core
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft

INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2]])}


def trained_adapter(path, alpha: int, seed: int):
    torch.manual_seed(seed)
    model = peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(path)
    return outputs(model.eval(), INPUT)


@pytest.mark.oracle
def test_hotswap_matches_loading_the_adapter_fresh(tmp_path):
    trained_adapter(tmp_path / "one", alpha=8, seed=1)
    expected_two = trained_adapter(tmp_path / "two", alpha=16, seed=2)
    model = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "one").eval()
    layer_ids = {id(m) for m in model.modules()}
    peft_core.hotswap_adapter(model, tmp_path / "two", adapter_name="default")
    assert {id(m) for m in model.modules()} == layer_ids  # no module created or replaced
    torch.testing.assert_close(outputs(model, INPUT), expected_two)

    theirs = peft.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "one").eval()
    from peft.utils.hotswap import hotswap_adapter as peft_hotswap

    peft_hotswap(theirs, str(tmp_path / "two"), adapter_name="default")
    torch.testing.assert_close(outputs(theirs, INPUT), expected_two)


def test_hotswap_refuses_other_targets_or_ranks(tmp_path):
    trained_adapter(tmp_path / "one", alpha=8, seed=1)
    other = peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(r=4, target_modules=["k_proj"], init_lora_weights=False))
    other.save_pretrained(tmp_path / "other-targets")
    bigger = peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    bigger.save_pretrained(tmp_path / "other-rank")
    model = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "one")
    before = outputs(model.eval(), INPUT)
    with pytest.raises(peft_core.CheckpointError, match="same target modules"):
        peft_core.hotswap_adapter(model, tmp_path / "other-targets")
    with pytest.raises(peft_core.CheckpointError, match="equal ranks"):
        peft_core.hotswap_adapter(model, tmp_path / "other-rank")
    torch.testing.assert_close(outputs(model, INPUT), before)  # a refused swap changes nothing


@pytest.mark.oracle
@pytest.mark.parametrize("multiplier", [0.0, 0.5, 2.0])
def test_rescale_adapter_scale_matches_peft(multiplier):
    from peft.helpers import rescale_adapter_scale as peft_rescale

    from tests.peft_core.oracle import twin_models

    config = peft_core.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, use_dora=False)
    ours, theirs = twin_models(models.tiny_llama, config)
    before = outputs(ours, INPUT)
    with peft_core.rescale_adapter_scale(ours, multiplier), peft_rescale(theirs, multiplier):
        torch.testing.assert_close(outputs(ours, INPUT), outputs(theirs, INPUT), rtol=1e-5, atol=1e-5)
        if multiplier == 0.0:
            with ours.disable_adapter():
                base = outputs(ours, INPUT)
            torch.testing.assert_close(outputs(ours, INPUT), base)
    torch.testing.assert_close(outputs(ours, INPUT), before)


def test_rescale_restores_on_error_and_rejects_plain_models():
    model = peft_core.get_peft_model(models.MLP(), peft_core.LoraConfig(target_modules=["lin0"], init_lora_weights=False))
    layer = model.base_model.model.lin0
    original = dict(layer.scaling)
    with pytest.raises(RuntimeError), peft_core.rescale_adapter_scale(model, 3.0):
        assert layer.scaling["default"] == original["default"] * 3
        raise RuntimeError("boom")
    assert layer.scaling == original
    with pytest.raises(ValueError, match="no adapter layers"), peft_core.rescale_adapter_scale(copy.deepcopy(models.MLP()), 2.0):
        pass
