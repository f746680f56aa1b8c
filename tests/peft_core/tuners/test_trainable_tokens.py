"""Trainable token rows (peft_core/tuners/trainable_tokens.py, lora/tokens.py) against the peft oracle:
LoRA's `trainable_token_indices` and the standalone TRAINABLE_TOKENS method save peft's keys, train only
the chosen rows, give peft's outputs (a tied lm_head included), load both ways and merge/unload."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import peft_core
from peft_core.tuners.lora.tokens import TrainableTokensLayer
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft

IDS = {"input_ids": torch.tensor([[1, 2, 5, 7, 3, 3], [9, 1, 0, 2, 4, 6]])}
ROWS = [1, 2, 3]
PREFIX = "base_model.model.model."


def llama(tied: bool = False):
    return models.tiny_llama(tie_word_embeddings=tied)


def _lora(lib, **kwargs):
    kw = dict(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False, trainable_token_indices=ROWS)
    kw.update(kwargs)
    return lib.LoraConfig(**kw)


def _tokens(lib, **kwargs):
    kw = dict(token_indices=ROWS)
    kw.update(kwargs)
    return lib.TrainableTokensConfig(**kw)


def _randomise_rows(model) -> None:
    """Give every token adapter new rows (as after training), so outputs differ from the base model."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.add_(torch.randn_like(p))


def _twins(base, make_config):
    """(ours, peft's) on copies of `base`, peft loaded with our adapter tensors."""
    ours = peft_core.get_peft_model(copy.deepcopy(base), make_config(peft_core))
    _randomise_rows(ours)
    theirs = peft.get_peft_model(copy.deepcopy(base), make_config(peft))
    result = peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours))
    assert not result.unexpected_keys
    return ours.eval(), theirs.eval()


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


# (id, base model factory, config factory(lib), expected token keys -> shape)
CASES = [
    ("lora-list", llama, lambda lib: _lora(lib), {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta": (3, 32)}),
    ("lora-list-tied", lambda: llama(True), lambda lib: _lora(lib), {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta": (3, 32)}),
    ("lora-dict", llama, lambda lib: _lora(lib, trainable_token_indices={"embed_tokens": [4, 0]}),
     {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta": (2, 32)}),
    ("lora-dict-head", llama, lambda lib: _lora(lib, trainable_token_indices={"embed_tokens": [3], "lm_head": [1, 2]}),
     {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta": (1, 32), "base_model.model.lm_head.token_adapter.trainable_tokens_delta": (2, 32)}),
    ("tokens", llama, lambda lib: _tokens(lib), {PREFIX + "embed_tokens.trainable_tokens_delta": (3, 32)}),
    ("tokens-tied", lambda: llama(True), lambda lib: _tokens(lib),
     {PREFIX + "embed_tokens.trainable_tokens_delta": (3, 32), "base_model.model.lm_head.trainable_tokens_delta": (3, 32)}),
    ("tokens-custom-mlp", models.MLP, lambda lib: _tokens(lib, target_modules=["emb"]), {"base_model.model.emb.trainable_tokens_delta": (3, 16)}),
]
INPUTS = {"tokens-custom-mlp": torch.tensor([[1, 2, 5, 7, 3]])}


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_keys_and_outputs_match_peft(case):
    name, factory, make_config, token_keys = case
    ours, theirs = _twins(factory(), make_config)
    mine = peft_core.get_peft_model_state_dict(ours)
    assert _shapes(mine) == _shapes(peft.get_peft_model_state_dict(theirs))
    assert {k: s for k, s in _shapes(mine).items() if "lora_" not in k} == token_keys
    inputs = INPUTS.get(name, IDS)
    base_out = outputs(factory(), inputs)
    ours_out = outputs(ours, inputs)
    assert not torch.allclose(ours_out, base_out, atol=1e-3)
    torch.testing.assert_close(ours_out, outputs(theirs, inputs), rtol=1e-5, atol=1e-5)
    with ours.disable_adapter(), theirs.disable_adapter():
        torch.testing.assert_close(outputs(ours, inputs), outputs(theirs, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_checkpoints_load_both_ways(case, tmp_path):
    name, factory, make_config, _ = case
    inputs = INPUTS.get(name, IDS)
    ours, theirs = _twins(factory(), make_config)
    expected = outputs(ours, inputs)

    ours.save_pretrained(tmp_path / "ours")
    torch.testing.assert_close(outputs(peft.PeftModel.from_pretrained(factory(), tmp_path / "ours"), inputs), expected, rtol=1e-5, atol=1e-5)
    theirs.save_pretrained(tmp_path / "theirs")
    loaded = peft_core.PeftModel.from_pretrained(factory(), tmp_path / "theirs")
    torch.testing.assert_close(outputs(loaded, inputs), expected, rtol=1e-5, atol=1e-5)

    saved_ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(saved_ours) - {"peft_version"} == set(saved_theirs) - {"peft_version"}
    for field in ("token_indices", "target_modules", "trainable_token_indices"):
        assert saved_ours.get(field) == saved_theirs.get(field), field


def test_only_the_chosen_rows_train():
    base = llama(tied=True)
    original = base.model.embed_tokens.weight.detach().clone()
    model = peft_core.get_peft_model(base, _lora(peft_core, init_lora_weights=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable == {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta.default"}
    delta = model.base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta["default"]
    assert torch.equal(delta, original[ROWS])  # starts as the original rows: the adapter is a no-op
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])}
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert delta.grad is not None and delta.grad.abs().sum(dim=1).min() > 0
    opt.step()
    assert not torch.equal(delta.detach(), original[ROWS])
    assert torch.equal(model.get_base_model().model.embed_tokens.base_layer.weight, original)  # base untouched
    with torch.no_grad():
        looked_up = model.get_base_model().model.embed_tokens(torch.arange(10))
    keep = [i for i in range(10) if i not in ROWS]
    torch.testing.assert_close(looked_up[ROWS], delta.detach())
    torch.testing.assert_close(looked_up[keep], original[keep])


@pytest.mark.parametrize("make_config", [lambda: _lora(peft_core), lambda: _tokens(peft_core)], ids=["lora", "tokens"])
def test_tied_lm_head_follows_the_rows(make_config):
    base = llama(tied=True)
    model = peft_core.get_peft_model(base, make_config()).eval()
    _randomise_rows(model)
    inner = model.get_base_model()
    emb = inner.model.embed_tokens
    rows = emb.deltas["default"].detach()
    weight = emb.base_layer.weight.detach().clone()
    weight[ROWS] = rows
    with torch.no_grad():
        hidden = inner.model(**IDS).last_hidden_state
        logits = model(**IDS).logits
    torch.testing.assert_close(logits, hidden @ weight.T, rtol=1e-5, atol=1e-5)
    assert inner.lm_head.deltas["default"] is emb.deltas["default"]  # one Parameter, trained once


def test_untied_lm_head_is_left_alone():
    model = peft_core.get_peft_model(llama(tied=False), _lora(peft_core))
    assert type(model.get_base_model().lm_head) is torch.nn.Linear


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("make_config", [lambda: _lora(peft_core), lambda: _tokens(peft_core)], ids=["lora", "tokens"])
def test_merge_unmerge_and_unload(make_config, tied):
    base = llama(tied)
    original = base.model.embed_tokens.weight.detach().clone()
    model = peft_core.get_peft_model(copy.deepcopy(base), make_config()).eval()
    _randomise_rows(model)
    expected = outputs(model, IDS)
    rows = model.get_base_model().model.embed_tokens.deltas["default"].detach().clone()

    model.merge_adapter()
    merged_weight = model.get_base_model().model.embed_tokens.base_layer.weight
    torch.testing.assert_close(merged_weight[ROWS], rows)
    torch.testing.assert_close(outputs(model, IDS), expected, rtol=1e-5, atol=1e-5)
    model.unmerge_adapter()
    assert torch.equal(model.get_base_model().model.embed_tokens.base_layer.weight, original)
    torch.testing.assert_close(outputs(model, IDS), expected, rtol=1e-5, atol=1e-5)

    merged = copy.deepcopy(model).merge_and_unload()
    assert type(merged.model.embed_tokens) is torch.nn.Embedding and type(merged.lm_head) is torch.nn.Linear
    assert (merged.lm_head.weight is merged.model.embed_tokens.weight) == tied
    torch.testing.assert_close(outputs(merged, IDS), expected, rtol=1e-5, atol=1e-5)

    restored = model.unload()
    assert not any(isinstance(m, TrainableTokensLayer) for m in restored.modules())
    assert torch.equal(restored.model.embed_tokens.weight, original)
    torch.testing.assert_close(outputs(restored, IDS), outputs(base, IDS))


def test_several_adapters_switch_and_delete():
    model = peft_core.get_peft_model(llama(tied=True), _lora(peft_core, init_lora_weights=True))
    model.add_adapter("other", _lora(peft_core, init_lora_weights=True, trainable_token_indices=[4, 5, 6, 7]))
    emb = model.get_base_model().model.embed_tokens
    assert emb.adapter_names == ["default", "other"]
    other = peft_core.get_peft_model_state_dict(model, adapter_name="other")
    assert _shapes({k: v for k, v in other.items() if "lora_" not in k}) == {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta": (4, 32)}
    model.set_adapter("other")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable == {PREFIX + "embed_tokens.token_adapter.trainable_tokens_delta.other"}
    with torch.no_grad():
        emb.deltas["other"].add_(1.0)
    with torch.no_grad():
        looked_up = emb(torch.tensor([4, 1]))
    torch.testing.assert_close(looked_up[0], emb.deltas["other"][0])
    torch.testing.assert_close(looked_up[1], emb.base_layer.weight[1])  # row 1 belongs to the inactive adapter
    model.delete_adapter("other")
    model.delete_adapter("default")
    inner = model.get_base_model()
    assert type(inner.model.embed_tokens) is torch.nn.Embedding and type(inner.lm_head) is torch.nn.Linear


@pytest.mark.oracle
def test_scaled_word_embeddings_match_peft():
    """Gemma-style embeddings multiply looked-up rows by embed_scale; token rows and LoRA rows must too."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    def gemma():
        torch.manual_seed(0)
        cfg = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
        return Gemma3ForCausalLM(cfg).eval()

    assert float(gemma().model.embed_tokens.embed_scale) != 1.0
    for make_config in (lambda lib: _tokens(lib), lambda lib: lib.LoraConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False)):
        ours, theirs = _twins(gemma(), make_config)
        torch.testing.assert_close(outputs(ours, IDS), outputs(theirs, IDS), rtol=1e-5, atol=1e-5)


def test_default_target_is_the_input_embedding_and_no_full_matrix_is_saved(tmp_path):
    model = peft_core.get_peft_model(llama(), _tokens(peft_core))
    assert model.peft_config["default"].target_modules == "model.embed_tokens"
    listed = peft_core.get_peft_model(llama(), _tokens(peft_core, target_modules=["embed_tokens"]))
    assert list(peft_core.get_peft_model_state_dict(listed)) == [PREFIX + "embed_tokens.trainable_tokens_delta"]


# ------------------------------------------------------------------------------------ errors


def test_config_problems_are_reported_together():
    with pytest.raises(peft_core.ConfigError) as err:
        peft_core.TrainableTokensConfig(token_indices=[3, -1, 3])
    assert len(err.value.problems) == 2 and "listed more than once" in str(err.value) and ">= 0" in str(err.value)
    with pytest.raises(peft_core.ConfigError, match="empty"):
        peft_core.TrainableTokensConfig()
    with pytest.raises(peft_core.ConfigError, match=r"trainable_token_indices\['embed_tokens'\]: token ids \[2\]"):
        peft_core.LoraConfig(target_modules=["q_proj"], trainable_token_indices={"embed_tokens": [2, 2]})


def test_out_of_range_ids_say_how_many_rows_there_are():
    with pytest.raises(peft_core.ConfigError, match=r"token ids \[64\] are outside Embedding with 64 rows; use ids 0..63"):
        peft_core.get_peft_model(llama(), _lora(peft_core, trainable_token_indices=[1, 64]))


def test_an_embedding_cannot_be_a_lora_target_and_train_rows():
    with pytest.raises(peft_core.UnsupportedLayerError, match="Remove it from target_modules, or from trainable_token_indices"):
        peft_core.get_peft_model(llama(), _lora(peft_core, target_modules=["embed_tokens"]))


def test_unknown_module_names_and_models_without_an_input_embedding():
    with pytest.raises(peft_core.ConfigError, match=r"\['nonexistent'\] matched no module"):
        peft_core.get_peft_model(llama(), _lora(peft_core, trainable_token_indices={"nonexistent": [1]}))
    with pytest.raises(peft_core.ConfigError, match=r"name it, e.g. TrainableTokensConfig\(target_modules=\['emb'\]"):
        peft_core.get_peft_model(models.MLP(), _lora(peft_core, target_modules=["lin0"]))


def test_config_side_needs_no_torch():
    """The studio lists the method, renders its form and reads peft's adapter_config.json without torch."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["torch"] = sys.modules["transformers"] = None  # any import of them fails
import peft_core
from peft_core.registry import registered_methods
spec = registered_methods()["TRAINABLE_TOKENS"]
assert sorted(spec.config_cls.json_schema()["properties"]) == [
    "base_model_name_or_path", "inference_mode", "init_weights", "peft_version", "revision", "target_modules", "task_type", "token_indices"]
cfg = peft_core.PeftConfig.from_dict({"peft_type": "TRAINABLE_TOKENS", "token_indices": [5], "target_modules": "model.embed_tokens"})
print(type(cfg).__name__, cfg.token_indices)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TrainableTokensConfig [5]" in result.stdout
