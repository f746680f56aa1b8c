"""IA3 add_weighted_adapter against the peft oracle: a linear combination of the scaling vectors."""

from __future__ import annotations

import pytest
import torch

import peft_core
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft
from tests.peft_core.tuners.contract import IDS, TOL


def build(lib, second_targets=("lin0", "head", "conv")):
    """Adapters 'a' (lin0, head) and 'b' (by default also conv) on the MLP; head is scaled at its input."""
    model = lib.get_peft_model(
        models.MLP(), lib.IA3Config(target_modules=["lin0", "head"], feedforward_modules=["head"], init_ia3_weights=False), adapter_name="a"
    )
    model.add_adapter("b", lib.IA3Config(target_modules=list(second_targets), feedforward_modules=["head"], init_ia3_weights=False))
    return model


@pytest.mark.oracle
@pytest.mark.parametrize("weights", [[0.7, 0.3], [1.0, -0.5], [2.0]], ids=str)
def test_linear_combination_matches_peft(weights):
    second = ("lin0", "head")  # peft's IA3 refuses nn.Conv1d
    ours, theirs = build(peft_core, second), build(peft, second)
    for name in ("a", "b"):
        peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours, adapter_name=name), adapter_name=name)
    sources = ["a", "b"][: len(weights)]
    ours.add_weighted_adapter(sources, weights, "mix")
    theirs.add_weighted_adapter(sources, weights, "mix")
    assert ours.active_adapters == ["a"]
    mine = peft_core.get_peft_model_state_dict(ours, adapter_name="mix")
    their_state = peft.get_peft_model_state_dict(theirs, adapter_name="mix")
    assert sorted(mine) == sorted(their_state)
    for key, value in mine.items():
        torch.testing.assert_close(value, their_state[key], **TOL)
    ours.set_adapter("mix")
    theirs.set_adapter("mix")
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(outputs(ours, IDS), outputs(theirs, IDS), **TOL)
    expected = sum(w * ours.base_model.model.lin0.ia3_l[n] for n, w in zip(sources, weights))
    torch.testing.assert_close(ours.base_model.model.lin0.ia3_l["mix"], expected, **TOL)


def test_layer_only_one_source_adapts_takes_its_weighted_vector():
    model = build(peft_core)
    model.add_weighted_adapter(["a", "b"], [0.5, 0.25], "mix")
    conv = model.base_model.model.conv
    torch.testing.assert_close(conv.ia3_l["mix"], 0.25 * conv.ia3_l["b"], **TOL)
    assert sorted(model.peft_config["mix"].target_modules) == ["conv", "head", "lin0"]


def test_bad_arguments_are_all_reported_and_change_nothing():
    model = build(peft_core)
    before = sorted(n for n, _ in model.named_parameters())
    with pytest.raises(peft_core.ConfigError) as err:
        model.add_weighted_adapter(["a", "nope"], [1.0], "a")
    text = str(err.value)
    assert "adapters: ['nope'] are not adapters" in text and "adapter_name: 'a' already exists" in text and "weights: give one weight per adapter (2), got 1" in text
    assert sorted(n for n, _ in model.named_parameters()) == before


def test_input_and_output_scaling_of_one_layer_cannot_be_combined():
    model = peft_core.get_peft_model(models.MLP(), peft_core.IA3Config(target_modules=["head"], feedforward_modules=["head"]), adapter_name="a")
    model.add_adapter("b", peft_core.IA3Config(target_modules=["head"], feedforward_modules=[]))
    before = sorted(n for n, _ in model.named_parameters())
    with pytest.raises(peft_core.ConfigError, match="feedforward_modules: a layer is scaled at its input by one adapter"):
        model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix")
    assert "mix" not in model.peft_config and sorted(n for n, _ in model.named_parameters()) == before


def test_regex_targets_are_or_combined():
    model = peft_core.get_peft_model(models.MLP(), peft_core.IA3Config(target_modules="lin0", feedforward_modules="head"), adapter_name="a")
    model.add_adapter("b", peft_core.IA3Config(target_modules="head", feedforward_modules="head"))
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix")
    assert model.peft_config["mix"].target_modules == "(?:lin0)|(?:head)"
    assert "mix" in model.base_model.model.lin0.ia3_l and "mix" in model.base_model.model.head.ia3_l
