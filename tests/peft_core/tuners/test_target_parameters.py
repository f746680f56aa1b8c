"""LoRA on raw parameters (`target_parameters`, peft_core/tuners/lora/params.py) against the peft oracle:
MoE expert tensors of tiny transformers models (3-D, stored (E, out, in) or, when `is_transposed`,
(E, in, out)) get peft's exact keys and shapes, the same outputs for the same weights, checkpoints that
load both ways and merges that keep outputs; what a parameter adapter cannot do is refused with a fix."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import transformers

import peft_core
from peft_core.tuners.lora.params import LoraParameter
from tests.peft_core.oracle import outputs, peft

IDS = {"input_ids": torch.tensor([[1, 2, 5, 7, 3, 9, 11, 4], [8, 6, 0, 13, 2, 2, 5, 1]])}
COMMON = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)


def _tiny(model_cls: str, config_cls: str, **kwargs):
    def make() -> nn.Module:
        torch.manual_seed(0)
        return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**COMMON, **kwargs)).eval()

    return make


# (id, factory, expert module path in layer 0, target_parameters, {param: (stored shape, lora_A shape, lora_B shape)}), r=2, E=3
MOE = [
    ("qwen3_moe", _tiny("Qwen3MoeForCausalLM", "Qwen3MoeConfig", intermediate_size=64, moe_intermediate_size=16, num_experts=3, num_experts_per_tok=2),
     "mlp.experts", {"gate_up_proj": ((3, 32, 32), (6, 32), (32, 6)), "down_proj": ((3, 32, 16), (6, 16), (32, 6))}),
    ("mixtral", _tiny("MixtralForCausalLM", "MixtralConfig", intermediate_size=16, num_local_experts=3, num_experts_per_tok=2),
     "mlp.experts", {"gate_up_proj": ((3, 32, 32), (6, 32), (32, 6)), "down_proj": ((3, 32, 16), (6, 16), (32, 6))}),
    ("gpt_oss-transposed", _tiny("GptOssForCausalLM", "GptOssConfig", intermediate_size=16, num_local_experts=3, num_experts_per_tok=2),
     "mlp.experts", {"gate_up_proj": ((3, 32, 32), (6, 32), (32, 6)), "down_proj": ((3, 16, 32), (6, 16), (32, 6))}),
    ("llama4", _tiny("Llama4ForCausalLM", "Llama4TextConfig", intermediate_size=16, intermediate_size_mlp=64, num_local_experts=3, num_experts_per_tok=1),
     "feed_forward.experts", {"gate_up_proj": ((3, 32, 32), (6, 32), (32, 6)), "down_proj": ((3, 16, 32), (6, 32), (16, 6))}),
]


def _config(lib, experts: str, params, **kwargs):
    kw = dict(r=2, lora_alpha=6, target_modules=[], target_parameters=[f"{experts}.{p}" for p in params], init_lora_weights=False)
    kw.update(kwargs)
    return lib.LoraConfig(**kw)


def _twins(factory, make_config):
    base = factory()
    ours = peft_core.get_peft_model(copy.deepcopy(base), make_config(peft_core)).eval()
    theirs = peft.get_peft_model(copy.deepcopy(base), make_config(peft)).eval()
    result = peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours))
    assert not result.unexpected_keys
    return ours, theirs


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.oracle
@pytest.mark.parametrize("case", MOE, ids=[c[0] for c in MOE])
def test_keys_shapes_and_outputs_match_peft(case):
    _, factory, experts, facts = case
    ours, theirs = _twins(factory, lambda lib: _config(lib, experts, facts))
    mine = _shapes(peft_core.get_peft_model_state_dict(ours))
    assert mine == _shapes(peft.get_peft_model_state_dict(theirs))
    # two parameters on one module nest: the first registered is innermost (keys gain `.base_layer.`)
    prefix = f"base_model.model.model.layers.0.{experts}."
    (first, (_, a1, b1)), (second, (_, a2, b2)) = facts.items()
    assert mine[prefix + "base_layer.lora_A.weight"] == a1 and mine[prefix + "base_layer.lora_B.weight"] == b1
    assert mine[prefix + "lora_A.weight"] == a2 and mine[prefix + "lora_B.weight"] == b2
    assert len(mine) == 8  # 2 layers x 2 parameters x (A, B)

    base_out = outputs(factory(), IDS)
    ours_out = outputs(ours, IDS)
    assert not torch.allclose(ours_out, base_out, atol=1e-3)
    torch.testing.assert_close(ours_out, outputs(theirs, IDS), rtol=1e-5, atol=1e-5)
    with ours.disable_adapter():
        torch.testing.assert_close(outputs(ours, IDS), base_out)


@pytest.mark.parametrize("case", MOE, ids=[c[0] for c in MOE])
def test_delta_layout_per_expert(case):
    """delta_e = s B_e A_e with A_e = A.view(E, r, in)[e] and B_e = B.view(out, r, E)[:, :, e], stored like W."""
    _, factory, experts, facts = case
    base = factory()
    model = peft_core.get_peft_model(copy.deepcopy(base), _config(peft_core, experts, ["gate_up_proj"]))
    layer = model.get_base_model().get_submodule(f"model.layers.0.{experts}")
    assert isinstance(layer, LoraParameter)
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    transposed = bool(getattr(layer.view.module, "is_transposed", False))
    expected = torch.stack([b.view(b.shape[0], 2, 3)[:, :, e] @ a.view(3, 2, -1)[e] for e in range(3)]) * 3.0
    expected = expected.transpose(1, 2) if transposed else expected
    original = base.get_submodule(f"model.layers.0.{experts}").gate_up_proj.detach()
    merged = model.merge_and_unload().get_submodule(f"model.layers.0.{experts}").gate_up_proj.detach()
    torch.testing.assert_close(merged - original, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("case", MOE, ids=[c[0] for c in MOE])
def test_checkpoints_load_both_ways(case, tmp_path):
    _, factory, experts, facts = case
    ours, theirs = _twins(factory, lambda lib: _config(lib, experts, facts))
    expected = outputs(ours, IDS)
    ours.save_pretrained(tmp_path / "ours")
    torch.testing.assert_close(outputs(peft.PeftModel.from_pretrained(factory(), tmp_path / "ours"), IDS), expected, rtol=1e-5, atol=1e-5)
    theirs.save_pretrained(tmp_path / "theirs")
    torch.testing.assert_close(outputs(peft_core.PeftModel.from_pretrained(factory(), tmp_path / "theirs"), IDS), expected, rtol=1e-5, atol=1e-5)
    saved_ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(saved_ours) - {"peft_version"} == set(saved_theirs) - {"peft_version"}
    assert set(saved_ours["target_parameters"]) == set(saved_theirs["target_parameters"])  # peft writes a set, in set order
    for field in ("target_modules", "r", "lora_alpha"):
        assert saved_ours[field] == saved_theirs[field], field


@pytest.mark.parametrize("case", MOE, ids=[c[0] for c in MOE])
def test_merge_unmerge_and_unload_keep_outputs(case):
    _, factory, experts, facts = case
    base = factory()
    reference = outputs(copy.deepcopy(base), IDS)
    model = peft_core.get_peft_model(copy.deepcopy(base), _config(peft_core, experts, facts))
    expected = outputs(model, IDS)
    model.merge_adapter()
    torch.testing.assert_close(outputs(model, IDS), expected, rtol=1e-5, atol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(outputs(model, IDS), expected, rtol=1e-5, atol=1e-5)
    merged = copy.deepcopy(model).merge_and_unload(safe_merge=True)
    assert not any(isinstance(m, LoraParameter) for m in merged.modules())
    torch.testing.assert_close(outputs(merged, IDS), expected, rtol=1e-5, atol=1e-5)
    restored = model.unload()
    assert type(restored.get_submodule(f"model.layers.0.{experts}")) is type(base.get_submodule(f"model.layers.0.{experts}"))
    torch.testing.assert_close(outputs(restored, IDS), reference)


def test_training_moves_only_the_adapter():
    _, factory, experts, facts = MOE[0]
    model = peft_core.get_peft_model(factory(), _config(peft_core, experts, facts, init_lora_weights=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 8
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # B starts at 0: A gets its gradient from the second step on
        model(**IDS, labels=IDS["input_ids"]).loss.backward()
        opt.step()
        opt.zero_grad()
    for name, p in model.named_parameters():
        assert (not torch.equal(before[name], p.detach())) == (name in trainable), name


# ------------------------------------------------------------------------------------ a custom module


class Experts(nn.Module):
    """Three weights, registered zeta, alpha, flat (not alphabetical), two of them per-expert."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.zeta = nn.Parameter(torch.randn(3, 8, 6))  # (E, out, in)
        self.alpha = nn.Parameter(torch.randn(3, 6, 8))  # (E, out, in): 8 -> 6 per expert
        self.flat = nn.Parameter(torch.randn(5, 8))  # 2-D (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("bi,eoi->beo", x, self.alpha).relu()
        y = torch.einsum("beo,eio->bi", h, self.zeta)
        return y + (x @ self.flat.T).sum(-1, keepdim=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.exp = Experts()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.exp(x))


X = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.oracle
@pytest.mark.parametrize("params", [["alpha", "zeta", "flat"], ["exp.flat", "exp.zeta"], ["lin.weight"]], ids=str)
def test_nesting_follows_parameter_order_and_2d_weights_work(params):
    make = lambda lib: lib.LoraConfig(r=2, lora_alpha=4, target_modules=[], target_parameters=params, init_lora_weights=False)  # noqa: E731
    ours, theirs = _twins(Net, make)
    assert _shapes(peft_core.get_peft_model_state_dict(ours)) == _shapes(peft.get_peft_model_state_dict(theirs))
    torch.testing.assert_close(outputs(ours, X), outputs(theirs, X), rtol=1e-5, atol=1e-5)
    merged = copy.deepcopy(ours).merge_and_unload()
    torch.testing.assert_close(outputs(merged, X), outputs(ours, X), rtol=1e-5, atol=1e-5)


def test_rank_pattern_matches_the_parameter_name():
    model = peft_core.get_peft_model(Net(), peft_core.LoraConfig(r=2, target_parameters=["alpha", "zeta"], rank_pattern={"exp.alpha": 4}))
    shapes = _shapes(peft_core.get_peft_model_state_dict(model))
    assert shapes["base_model.model.exp.lora_A.weight"] == (12, 8)  # alpha: r=4, 3 experts
    assert shapes["base_model.model.exp.base_layer.lora_A.weight"] == (6, 6)  # zeta: r=2


def test_second_adapter_and_deleting_the_inner_one():
    model = peft_core.get_peft_model(Net(), peft_core.LoraConfig(r=2, target_parameters=["zeta"], init_lora_weights=False))
    model.add_adapter("other", peft_core.LoraConfig(r=2, target_parameters=["alpha", "zeta"], init_lora_weights=False))
    other = _shapes(peft_core.get_peft_model_state_dict(model, adapter_name="other"))
    assert set(other) == {f"base_model.model.exp.{p}lora_{m}.weight" for p in ("", "base_layer.") for m in "AB"}
    model.set_adapter("other")
    expected = outputs(model, X)
    model.delete_adapter("default")  # zeta keeps "other"; nothing unwraps yet
    torch.testing.assert_close(outputs(model, X), expected)
    model.set_adapter("other")
    model.delete_adapter("other")
    assert type(model.get_base_model().exp) is Experts
    torch.testing.assert_close(outputs(model, X), outputs(Net(), X))


def test_saved_config_targets_no_modules_by_default():
    config = peft_core.LoraConfig(target_parameters=["mlp.experts.down_proj"])
    assert config.target_modules == [] and config.to_dict()["target_modules"] == []


# ------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "kwargs,field,fix",
    [
        (dict(lora_dropout=0.1), "lora_dropout", "set lora_dropout=0"),
        (dict(use_dora=True), "use_dora", "set use_dora=False"),
        (dict(lora_bias=True), "lora_bias", "set lora_bias=False"),
        (dict(init_lora_weights="pissa"), "init_lora_weights", "use True, False or 'gaussian'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_what_a_parameter_adapter_cannot_do_is_refused(kwargs, field, fix):
    with pytest.raises(peft_core.ConfigError) as err:
        peft_core.LoraConfig(target_parameters=["mlp.experts.down_proj"], **kwargs)
    assert any(p.startswith(f"{field}:") and fix in p for p in err.value.problems), err.value.problems


def test_all_refusals_at_once():
    with pytest.raises(peft_core.ConfigError) as err:
        peft_core.LoraConfig(target_parameters=["x"], lora_dropout=0.1, use_dora=True)
    assert len(err.value.problems) == 2


def test_names_that_match_nothing_are_listed_with_what_exists():
    with pytest.raises(peft_core.ConfigError, match=r"\['exp', 'nothing'\] matched no parameter.*exp\.zeta") as err:
        peft_core.get_peft_model(Net(), peft_core.LoraConfig(target_parameters=["alpha", "exp", "nothing"]))
    assert "target_parameters:" in err.value.problems[0]


def test_a_parameter_of_an_adapted_module_is_refused():
    with pytest.raises(peft_core.UnsupportedLayerError, match="list it in target_modules or in target_parameters, not both"):
        peft_core.get_peft_model(Net(), peft_core.LoraConfig(target_modules=["lin"], target_parameters=["lin.weight"]))
