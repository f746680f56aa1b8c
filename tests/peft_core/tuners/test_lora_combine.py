"""add_weighted_adapter against the peft oracle, for every combination type."""

from __future__ import annotations

import pytest
import torch

import peft_core
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft

X = torch.tensor([[1, 2, 3, 4, 5, 6]])


ALL_KINDS = ("lin0", "conv", "emb")


def build(lib, equal_ranks: bool = True, targets: tuple[str, ...] = ALL_KINDS):
    """Two LoRA adapters 'a' and 'b' on the MLP (by default on its linear, conv and embedding layers)."""
    targets = list(targets)
    model = lib.get_peft_model(models.MLP(), lib.LoraConfig(target_modules=targets, r=4, lora_alpha=8, init_lora_weights=False), adapter_name="a")
    model.add_adapter("b", lib.LoraConfig(target_modules=targets, r=4 if equal_ranks else 2, lora_alpha=16, init_lora_weights=False))
    return model


@pytest.fixture
def twins():
    def make(equal_ranks: bool = True, targets: tuple[str, ...] = ALL_KINDS):
        ours, theirs = build(peft_core, equal_ranks, targets), build(peft, equal_ranks, targets)
        for name in ("a", "b"):
            peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours, adapter_name=name), adapter_name=name)
        return ours, theirs

    return make


def combined_state(model, lib, name):
    return lib.get_peft_model_state_dict(model, adapter_name=name)


def delta(model, name):
    """Each adapted layer's effective update for adapter `name` (what the combination must get right)."""
    return {n: m.delta_weight(name) if hasattr(m, "delta_weight") else m.get_delta_weight(name)
            for n, m in model.named_modules() if hasattr(m, "scaling") and name in m.scaling}


@pytest.mark.oracle
@pytest.mark.parametrize(
    "combination, kwargs, targets",
    [
        ("linear", {}, ALL_KINDS),
        ("cat", {}, ALL_KINDS),
        ("svd", {}, ("lin0", "emb")),  # peft 0.21.2's svd combination crashes on Conv1d with kernel > 1
        ("svd", {"svd_rank": 3}, ("lin0", "emb")),
        ("magnitude_prune", {"density": 0.5}, ALL_KINDS),
        ("ties", {"density": 0.5}, ALL_KINDS),
        ("ties", {"density": 0.7, "majority_sign_method": "frequency"}, ALL_KINDS),
        ("dare_linear", {"density": 1.0}, ALL_KINDS),  # random masks: compared exactly only when nothing is dropped
        ("dare_ties", {"density": 1.0}, ALL_KINDS),
    ],
)
@pytest.mark.parametrize("weights", [[0.7, 0.3], [1.0, -0.5]], ids=["positive", "negative"])
def test_combination_matches_peft(twins, combination, kwargs, targets, weights):
    ours, theirs = twins(targets=targets)
    ours.add_weighted_adapter(["a", "b"], weights, "m", combination_type=combination, **kwargs)
    theirs.add_weighted_adapter(["a", "b"], weights, "m", combination_type=combination, **kwargs)
    mine, reference = combined_state(ours, peft_core, "m"), combined_state(theirs, peft, "m")
    assert sorted(mine) == sorted(reference)
    assert (ours.peft_config["m"].r, ours.peft_config["m"].lora_alpha) == (theirs.peft_config["m"].r, theirs.peft_config["m"].lora_alpha)
    if combination != "cat":  # for embeddings peft splits cat's weights unevenly between A and B; the product is equal
        for key in reference:
            torch.testing.assert_close(mine[key], reference[key], rtol=1e-5, atol=1e-5, msg=key)
    ours_delta, their_delta = delta(ours.base_model.model, "m"), delta(theirs.base_model.model, "m")
    for key in their_delta:
        torch.testing.assert_close(ours_delta[key].float(), their_delta[key].float().reshape(ours_delta[key].shape) if ours_delta[key].dim() == their_delta[key].dim() else their_delta[key].float().T, rtol=1e-4, atol=1e-5, msg=key)
    ours.set_adapter("m")
    theirs.set_adapter("m")
    torch.testing.assert_close(outputs(ours.eval(), X), outputs(theirs.eval(), X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("combination", ["dare_linear", "dare_ties"])
def test_dare_drops_and_rescales(combination):
    torch.manual_seed(0)
    model = build(peft_core, targets=("lin0",))
    layer = model.base_model.model.lin0
    model.add_weighted_adapter(["a", "b"], [0.7, 0.3], "m", combination_type=combination, density=0.5)
    a = layer.lora_A["m"].weight
    scaled = [(0.7 * layer.scaling["a"]) ** 0.5 * layer.lora_A["a"].weight, (0.3 * layer.scaling["b"]) ** 0.5 * layer.lora_A["b"].weight]
    # every entry is one of the kept/dropped combinations, rescaled by 1/density (dare_ties averages agreeing ones)
    candidates = [(m0 * scaled[0] + m1 * scaled[1]) / 0.5 for m0 in (0, 1) for m1 in (0, 1)]
    candidates += [scaled[0] / 0.5, scaled[1] / 0.5, (scaled[0] + scaled[1]) / 2 / 0.5]
    explained = torch.stack([(c - a).abs() < 1e-5 for c in candidates]).any(dim=0)
    assert explained.all()
    assert 0.05 < (a == 0).float().mean().item() < 0.6  # about a quarter dropped by both


def test_svd_on_conv_is_best_low_rank_approximation():
    model = build(peft_core, targets=("conv",))
    layer = model.base_model.model.conv
    target = 0.7 * layer.delta_weight("a") + 0.3 * layer.delta_weight("b")
    model.add_weighted_adapter(["a", "b"], [0.7, 0.3], "m", combination_type="svd", svd_rank=8)
    torch.testing.assert_close(layer.delta_weight("m"), target, rtol=1e-4, atol=1e-5)  # rank 8 covers the sum of two rank-4


def test_cat_is_the_exact_weighted_sum():
    model = build(peft_core, equal_ranks=False)
    layer = model.base_model.model.lin0
    expected = 0.7 * layer.delta_weight("a") + 0.3 * layer.delta_weight("b")
    model.add_weighted_adapter(["a", "b"], [0.7, 0.3], "m", combination_type="cat")
    torch.testing.assert_close(layer.delta_weight("m"), expected, rtol=1e-5, atol=1e-6)
    assert model.peft_config["m"].r == 6


def test_bad_requests_are_explained():
    model = build(peft_core, equal_ranks=False)
    with pytest.raises(peft_core.ConfigError, match="needs equal ranks"):
        model.add_weighted_adapter(["a", "b"], [0.5, 0.5], "m", combination_type="linear")
    with pytest.raises(peft_core.ConfigError, match="density"):
        model.add_weighted_adapter(["a", "b"], [0.5, 0.5], "m", combination_type="ties")
    with pytest.raises(peft_core.ConfigError, match="not adapters of this model"):
        model.add_weighted_adapter(["a", "zzz"], [0.5, 0.5], "m", combination_type="svd")
    with pytest.raises(peft_core.ConfigError, match="one weight per adapter"):
        model.add_weighted_adapter(["a", "b"], [0.5], "m", combination_type="svd")
