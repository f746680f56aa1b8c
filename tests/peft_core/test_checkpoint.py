"""peft_core.checkpoint: which full embedding weights are saved beside an adapter (save_embedding_layers).

"auto" saves the embeddings the adapter itself adapts, found from the model's structure (peft issue
#3585: a qualified name such as "model.embed_tokens" counts too), or both embeddings when the vocabulary
was resized relative to the base model's config.json on this machine; it never asks the Hub (#3211).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import transformers

import peft_core
from peft_core import LoraConfig
from tests.peft_core import models
from tests.peft_core.oracle import outputs

IDS = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}
RESIZED_IDS = {"input_ids": torch.tensor([[1, 5, 66, 3, 69, 2]])}


def embedding_keys(state: dict) -> list[str]:
    return sorted(k for k in state if "lora_" not in k)


def our_keys(model, **kwargs) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedding_keys(peft_core.get_peft_model_state_dict(model, **kwargs))


@pytest.mark.oracle
@pytest.mark.parametrize("targets", [
    ["embed_tokens", "q_proj"], ["lm_head"], ["embed_tokens", "lm_head"], r".*\.(embed_tokens|q_proj)", ["q_proj"], "all-linear",
], ids=["embed", "lm-head", "both", "regex", "no-embedding", "all-linear"])
def test_auto_saves_targeted_embeddings_like_peft(peft, targets):
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=targets))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=targets))
    assert our_keys(ours) == embedding_keys(peft.get_peft_model_state_dict(theirs))


@pytest.mark.parametrize("targets, expected", [
    (["model.embed_tokens", "q_proj"], ["base_model.model.model.embed_tokens.base_layer.weight"]),
    (["model.embed_tokens", "lm_head"], ["base_model.model.lm_head.base_layer.weight", "base_model.model.model.embed_tokens.base_layer.weight"]),
])
def test_auto_saves_an_embedding_targeted_by_its_qualified_name(targets, expected):
    """peft issue #3585: peft 0.21 checks bare names only, so the trained embedding was silently dropped."""
    model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(r=4, target_modules=targets))
    assert our_keys(model) == expected
    state = peft_core.get_peft_model_state_dict(model)
    assert state[expected[-1]].data_ptr() == model.base_model.model.model.embed_tokens.base_layer.weight.data_ptr()


@pytest.mark.oracle
def test_qualified_name_checkpoint_restores_the_embedding_in_peft(tmp_path, peft):
    """The saved embedding weight is what makes a resized/retrained embedding survive the trip."""
    base = models.tiny_llama()
    model = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["model.embed_tokens", "q_proj"], init_lora_weights=False))
    with torch.no_grad():
        model.base_model.model.model.embed_tokens.base_layer.weight.add_(0.25)
    expected = outputs(model, IDS)
    model.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(outputs(theirs, IDS), expected)
    ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(outputs(ours, IDS), expected)


@pytest.mark.oracle
@pytest.mark.parametrize("factory, targets", [
    (models.tiny_llama, ["q_proj"]),
    (models.tiny_gpt2, ["c_attn"]),  # tied: lm_head.weight is wte.weight
], ids=["llama", "gpt2-tied"])
def test_true_saves_input_and_output_embeddings_like_peft(peft, factory, targets):
    base = factory()
    ours = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=targets))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=targets))
    expected = embedding_keys(peft.get_peft_model_state_dict(theirs, save_embedding_layers=True))
    assert our_keys(ours, save_embedding_layers=True) == expected
    assert len(expected) == 2


@pytest.mark.oracle
def test_true_with_a_targeted_embedding_saves_both_embeddings(peft):
    """peft 0.21 then saves only the targeted one; True means "save the embedding layers", so we save both."""
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    keys = our_keys(ours, save_embedding_layers=True)
    assert keys == ["base_model.model.lm_head.base_layer.weight", "base_model.model.model.embed_tokens.weight"]
    assert set(embedding_keys(peft.get_peft_model_state_dict(theirs, save_embedding_layers=True))) <= set(keys)


def test_tied_embedding_keys_load_back_without_unexpected_keys():
    model = peft_core.get_peft_model(models.tiny_gpt2(), LoraConfig(r=4, target_modules=["c_attn"]))
    state = peft_core.get_peft_model_state_dict(model, save_embedding_layers=True)
    assert {"base_model.model.lm_head.weight", "base_model.model.transformer.wte.weight"} <= set(state)
    fresh = peft_core.get_peft_model(models.tiny_gpt2(), LoraConfig(r=4, target_modules=["c_attn"]))
    assert peft_core.set_peft_model_state_dict(fresh, state) == ([], [])


def test_false_saves_no_embedding_even_when_targeted():
    model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(r=4, target_modules=["embed_tokens", "lm_head"]))
    assert our_keys(model, save_embedding_layers=False) == []
    with pytest.raises(ValueError, match="save_embedding_layers"):
        peft_core.get_peft_model_state_dict(model, save_embedding_layers="always")


def test_modules_to_save_head_is_not_saved_twice():
    model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert our_keys(model, save_embedding_layers=True) == ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight"]
    state = peft_core.get_peft_model_state_dict(model, save_embedding_layers=True)
    trained_copy = model.base_model.model.lm_head.modules_to_save["default"].weight
    assert state["base_model.model.lm_head.weight"].data_ptr() == trained_copy.data_ptr()


def test_injected_model_without_wrapper_gets_unprefixed_embedding_keys():
    model = peft_core.inject_adapter_in_model(LoraConfig(r=4, target_modules=["model.embed_tokens"]), models.tiny_llama())
    assert our_keys(model) == ["model.embed_tokens.base_layer.weight"]


# ------------------------------------------------------------------------------ resized vocabulary


@pytest.fixture
def base_folder(tmp_path):
    path = tmp_path / "base"
    models.tiny_llama().save_pretrained(path)
    return path


def resized_from(path, vocab: int | None = 70):
    model = transformers.LlamaForCausalLM.from_pretrained(path)
    if vocab is not None:
        torch.manual_seed(1)
        model.resize_token_embeddings(vocab)
    return model.eval()


@pytest.mark.oracle
def test_auto_saves_embeddings_when_the_vocabulary_was_resized(tmp_path, base_folder, peft, no_network):
    ours = peft_core.get_peft_model(resized_from(base_folder), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    theirs = peft.get_peft_model(resized_from(base_folder), peft.LoraConfig(r=4, target_modules=["q_proj"]))
    assert ours.peft_config["default"].base_model_name_or_path == str(base_folder)
    assert our_keys(ours) == embedding_keys(peft.get_peft_model_state_dict(theirs))
    assert our_keys(ours) == ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight"]

    expected = outputs(ours, RESIZED_IDS)
    ours.save_pretrained(tmp_path / "adapter")
    target = transformers.LlamaForCausalLM.from_pretrained(base_folder)
    target.resize_token_embeddings(70)  # new rows are random: only the saved ones give the same outputs
    loaded = peft.PeftModel.from_pretrained(target, tmp_path / "adapter")
    torch.testing.assert_close(outputs(loaded, RESIZED_IDS), expected)


def test_auto_saves_no_embedding_when_the_vocabulary_is_unchanged(base_folder, no_network):
    model = peft_core.get_peft_model(resized_from(base_folder, vocab=None), LoraConfig(r=4, target_modules=["q_proj"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert embedding_keys(peft_core.get_peft_model_state_dict(model)) == []


def test_auto_checks_a_hub_base_model_in_the_local_cache_without_the_network(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--my-org--tiny-llama" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"vocab_size": 64}')
    (tmp_path / "hub" / "models--my-org--tiny-llama" / "refs").mkdir()
    (tmp_path / "hub" / "models--my-org--tiny-llama" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    model = models.tiny_llama()
    model.resize_token_embeddings(70)
    peft_model = peft_core.get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], base_model_name_or_path="my-org/tiny-llama"))
    assert our_keys(peft_model) == ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight"]


def test_auto_with_an_uncached_hub_base_warns_and_never_asks_the_hub(no_network):
    model = models.tiny_llama()
    model.resize_token_embeddings(70)
    peft_model = peft_core.get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], base_model_name_or_path="my-org/never-downloaded"))
    with pytest.warns(UserWarning, match=r"my-org/never-downloaded.*save_embedding_layers=True"):
        state = peft_core.get_peft_model_state_dict(peft_model)
    assert embedding_keys(state) == []


def test_auto_with_an_unreadable_base_config_warns(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    peft_model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], base_model_name_or_path=str(tmp_path)))
    with pytest.warns(UserWarning, match="cannot tell whether the vocabulary was resized"):
        assert embedding_keys(peft_core.get_peft_model_state_dict(peft_model)) == []
