"""LoRA initialisations (peft_core/tuners/lora/init.py): PiSSA and OLoRA give peft's exact A, B and residual
base weight; the randomized PiSSA, the orthogonal init and the plain inits have the properties they
promise; the data-driven inits work on GPT-2's Conv1D through the base-layer view."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

import peft_core
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft

VOCAB_INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}


def _lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


def _wrap(lib, base: nn.Module, seed: int = 7, **kwargs):
    torch.manual_seed(seed)
    return lib.get_peft_model(base, lib.LoraConfig(**kwargs))


def _factors(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """name -> (A, B, base weight as stored) for every LoRA layer."""
    return {
        n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone(), m.base_layer.weight.detach().clone())
        for n, m in _lora_layers(model).items()
    }


def _assert_same_factors(ours: nn.Module, theirs: nn.Module) -> None:
    mine, ref = _factors(ours), _factors(theirs)
    assert mine.keys() == ref.keys() and mine
    for name in ref:
        for got, want, what in zip(mine[name], ref[name], ("A", "B", "residual")):
            assert got.dtype == want.dtype, (name, what)
            assert torch.equal(got, want), f"{name} {what}: max diff {(got.float() - want.float()).abs().max().item()}"


# ------------------------------------------------------------------------------------ PiSSA and OLoRA vs peft

ORACLE_CASES = [
    ("llama-all-linear-fp32", models.tiny_llama, None, dict(target_modules="all-linear")),
    ("llama-bf16", models.tiny_llama, torch.bfloat16, dict(target_modules=["q_proj", "down_proj"])),
    ("llama-fp16-rslora-patterns", models.tiny_llama, torch.float16, dict(
        target_modules=["q_proj", "down_proj", "up_proj"], use_rslora=True, rank_pattern={"down_proj": 2}, alpha_pattern={"q_proj": 3},
    )),
    ("mlp", models.MLP, None, dict(target_modules=["lin0"])),
]


@pytest.mark.oracle
@pytest.mark.parametrize("init", ["pissa", "olora", "pissa_niter_2"])
@pytest.mark.parametrize("case", ORACLE_CASES, ids=[c[0] for c in ORACLE_CASES])
def test_data_driven_init_equals_peft(case, init):
    """Same model, same seed: bit-identical A, B (float32, rounded through the base dtype) and residual."""
    _, factory, dtype, kwargs = case
    base = factory() if dtype is None else factory().to(dtype)
    config = dict(r=4, lora_alpha=8, init_lora_weights=init, **kwargs)
    ours = _wrap(peft_core, copy.deepcopy(base), **config)
    theirs = _wrap(peft, copy.deepcopy(base), **config)
    _assert_same_factors(ours, theirs)
    for a, b, _ in _factors(ours).values():
        assert a.dtype == b.dtype == torch.float32  # adapters train in float32 even on a half-precision base


@pytest.mark.oracle
def test_pissa_on_conv1d_equals_peft():
    config = dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], init_lora_weights="pissa")
    base = models.tiny_gpt2()
    _assert_same_factors(_wrap(peft_core, copy.deepcopy(base), **config), _wrap(peft, copy.deepcopy(base), **config))


class _Proj(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.proj = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@pytest.mark.oracle
@pytest.mark.parametrize("init", ["olora", "pissa"])
def test_conv1d_init_equals_peft_on_the_same_linear(init):
    """Conv1D stores W transposed; through the view it must initialise exactly like the nn.Linear holding W.
    (peft's own OLoRA on Conv1D builds A from the transposed weight and cannot run a forward pass.)"""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(24, 16)  # in 16, out 24, weight stored (16, 24)
    torch.nn.init.normal_(conv.weight)
    linear = nn.Linear(16, 24)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    config = dict(r=4, lora_alpha=8, target_modules=["proj"], init_lora_weights=init)
    ours = _wrap(peft_core, _Proj(conv), **config)
    theirs = _wrap(peft, _Proj(linear), **config)
    (a, b, residual), = _factors(ours).values()
    (ra, rb, rresidual), = _factors(theirs).values()
    assert torch.equal(a, ra) and torch.equal(b, rb)
    assert torch.equal(residual, rresidual.T)


# ------------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("init", ["pissa", "olora", "pissa_niter_4"])
@pytest.mark.parametrize("factory,targets", [(models.tiny_llama, ["q_proj", "down_proj"]), (models.tiny_gpt2, ["c_attn", "c_proj"])], ids=["linear", "conv1d"])
def test_residual_plus_update_is_the_original_weight(factory, targets, init):
    """W_res + s B A == W for every layer (Conv1D through its view), so the model's outputs do not move."""
    base = factory()
    original = {n: p.detach().clone() for n, p in base.named_parameters()}
    expected = outputs(copy.deepcopy(base), VOCAB_INPUT)
    model = _wrap(peft_core, base, r=4, lora_alpha=8, target_modules=targets, init_lora_weights=init)
    layers = _lora_layers(model)
    assert layers
    for name, layer in layers.items():
        key = name.removeprefix("base_model.model.") + ".weight"
        rebuilt = layer.view.get_weight() + layer.scaling["default"] * (layer.lora_B["default"].weight @ layer.lora_A["default"].weight)
        stored = rebuilt.T if layer.view.fan_in_fan_out else rebuilt
        torch.testing.assert_close(stored, original[key], rtol=0, atol=2e-6)
        assert not torch.equal(layer.base_layer.weight, original[key])  # the base now holds the residual
    torch.testing.assert_close(outputs(model, VOCAB_INPUT), expected, rtol=1e-4, atol=1e-5)


def test_pissa_niter_approximates_the_top_r_part():
    """The randomized SVD's s B A is close to the best rank-r approximation of W (Eckart-Young)."""
    torch.manual_seed(0)
    lin = nn.Linear(96, 64, bias=False)
    with torch.no_grad():  # a clear spectrum: 4 strong directions over small noise
        u, _ = torch.linalg.qr(torch.randn(64, 64))
        v, _ = torch.linalg.qr(torch.randn(96, 96))
        strength = torch.cat([torch.tensor([20.0, 15.0, 10.0, 8.0]), torch.full((60,), 0.1)])
        lin.weight.copy_(u @ torch.diag(strength) @ v[:, :64].T)
    weight = lin.weight.detach().clone()
    model = _wrap(peft_core, _Proj(lin), r=4, lora_alpha=8, target_modules=["proj"], init_lora_weights="pissa_niter_4")
    layer = model.base_model.model.proj
    update = layer.scaling["default"] * (layer.lora_B["default"].weight @ layer.lora_A["default"].weight)
    uu, ss, vh = torch.linalg.svd(weight)
    top_r = uu[:, :4] @ torch.diag(ss[:4]) @ vh[:4]
    assert (update - top_r).norm() / top_r.norm() < 1e-3
    assert torch.linalg.matrix_rank(update).item() == 4


@pytest.mark.parametrize("factory,target", [(models.tiny_llama, "down_proj"), (models.tiny_gpt2, "c_attn")], ids=["linear", "conv1d"])
def test_orthogonal_starts_at_zero_with_live_factors(factory, target):
    base = factory()
    expected = outputs(copy.deepcopy(base), VOCAB_INPUT)
    model = _wrap(peft_core, base, r=6, lora_alpha=12, target_modules=[target], init_lora_weights="orthogonal")
    for layer in _lora_layers(model).values():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        assert (b @ a).abs().max() < 1e-6 * a.norm() * b.norm()
        assert a.norm() > 0.5 and b.norm() > 0.5  # neither factor is zero ...
        assert (a.abs() > 0).float().mean() > 0.9 and (b.abs() > 0).float().mean() > 0.9  # ... nor mostly zero
        assert torch.linalg.matrix_rank(a).item() == 3 and torch.linalg.matrix_rank(b).item() == 3
    torch.testing.assert_close(outputs(model, VOCAB_INPUT), expected, rtol=1e-5, atol=1e-5)
    model.train()
    model(**VOCAB_INPUT, labels=VOCAB_INPUT["input_ids"]).loss.backward()
    for layer in _lora_layers(model).values():
        assert layer.lora_A["default"].weight.grad.abs().sum() > 0
        assert layer.lora_B["default"].weight.grad.abs().sum() > 0


def test_orthogonal_needs_an_even_rank():
    with pytest.raises(peft_core.ConfigError, match="even rank"):
        peft_core.LoraConfig(r=5, target_modules=["q_proj"], init_lora_weights="orthogonal")
    with pytest.raises(peft_core.ConfigError, match="even rank"):
        peft_core.LoraConfig(r=4, rank_pattern={"q_proj": 3}, target_modules=["q_proj"], init_lora_weights="orthogonal")
    peft_core.LoraConfig(r=4, rank_pattern={"q_proj": 2}, target_modules=["q_proj"], init_lora_weights="orthogonal")


class _Big(nn.Module):
    """Big enough for stable statistics."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(512, 256)
        self.emb = nn.Embedding(300, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("init", [True, False, "gaussian"])
def test_plain_inits_have_the_right_statistics(init):
    r = 8
    model = _wrap(peft_core, _Big(), seed=0, r=r, target_modules=["lin", "emb"], init_lora_weights=init)
    lin, emb = model.base_model.model.lin, model.base_model.model.emb
    a, b = lin.lora_A["default"].weight.detach(), lin.lora_B["default"].weight.detach()
    ea, eb = emb.lora_embedding_A["default"].detach(), emb.lora_embedding_B["default"].detach()
    bound = 1 / math.sqrt(512)  # kaiming-uniform(a=sqrt(5)) on (r, 512), like nn.Linear
    if init == "gaussian":
        assert abs(a.std().item() - 1 / r) < 0.1 / r and abs(a.mean().item()) < 0.02 / r
        assert a.abs().max() > bound
    else:
        assert a.abs().max() <= bound and abs(a.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    if init is False:  # everything random: the adapter acts from step 0
        assert b.abs().min() > 0 and abs(b.std().item() - 1 / math.sqrt(3 * r)) < 0.1 / math.sqrt(r)
        assert abs(ea.std().item() - 1) < 0.05 and abs(eb.std().item() - 1) < 0.05
    else:  # a no-op at the start: B = 0 (embeddings: A = 0, B ~ N(0, 1))
        assert torch.count_nonzero(b) == 0
        assert torch.count_nonzero(ea) == 0 and abs(eb.std().item() - 1) < 0.05


@pytest.mark.oracle
@pytest.mark.parametrize("init", [True, False, "gaussian"])
def test_plain_inits_equal_peft_for_the_same_seed(init):
    ours = _wrap(peft_core, _Big(), seed=3, r=8, target_modules=["lin", "emb"], init_lora_weights=init)
    theirs = _wrap(peft, _Big(), seed=3, r=8, target_modules=["lin", "emb"], init_lora_weights=init)
    mine, ref = peft_core.get_peft_model_state_dict(ours), peft.get_peft_model_state_dict(theirs)
    assert mine.keys() == ref.keys()
    for key in ref:
        assert torch.equal(mine[key], ref[key]), key


# ------------------------------------------------------------------------------------ where they do not apply


@pytest.mark.oracle
@pytest.mark.parametrize("init", ["pissa", "olora", "orthogonal"])
def test_embeddings_keep_the_default_init_as_in_peft(init):
    base = models.MLP()
    weight = base.emb.weight.detach().clone()
    with pytest.warns(UserWarning, match="does not apply to Embedding"):
        ours = _wrap(peft_core, copy.deepcopy(base), seed=1, r=4, target_modules=["emb"], init_lora_weights=init)
    theirs = _wrap(peft, copy.deepcopy(base), seed=1, r=4, target_modules=["emb"], init_lora_weights=init)
    mine, ref = peft_core.get_peft_model_state_dict(ours), peft.get_peft_model_state_dict(theirs)
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    assert torch.equal(ours.base_model.model.emb.base_layer.weight, weight)


@pytest.mark.parametrize("init", ["pissa", "olora", "orthogonal", "pissa_niter_2"])
def test_convolutions_are_refused_with_a_fix(init):
    with pytest.raises(peft_core.UnsupportedLayerError, match="linear layers only.*init_lora_weights=True"):
        peft_core.get_peft_model(models.MLP(), peft_core.LoraConfig(r=4, target_modules=["conv"], init_lora_weights=init))


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_rank_above_the_matrix_rank_is_refused_with_a_fix(init):
    """peft silently shrinks A and B below r, writing a checkpoint its own config cannot load back."""
    with pytest.raises(peft_core.UnsupportedLayerError, match=r"r <= min\(out, in\) = 16.*rank_pattern"):
        peft_core.get_peft_model(models.MLP(), peft_core.LoraConfig(r=20, target_modules=["lin0"], init_lora_weights=init))
