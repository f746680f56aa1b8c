"""Prompt tuning, p-tuning and prefix tuning against peft 0.21.2 (test-only oracle) on tiny Llama and GPT-2
(CAUSAL_LM) and tiny BERT and Llama classifiers (SEQ_CLS).

Same encoder weights in both (ours copied into peft's prompt encoder, whose sub-module names we share):
equal logits and loss, equal `prompt_embeddings` checkpoints that load both ways, greedy generation
equal to a greedy loop over peft's forward, configs that round-trip through peft's JSON.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn

import peft_core
from peft_core.describe import describe_model
from peft_core.tuners.prompt_learning import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig
from tests.peft_core import models
from tests.peft_core.oracle import oracle_config, outputs, peft
from tests.peft_core.tuners.contract import check_config_round_trip

torch.set_num_threads(1)
TOL = dict(rtol=1e-5, atol=1e-5)
IDS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])  # left padding in the second row
INPUTS = {"input_ids": IDS, "attention_mask": MASK, "labels": IDS.masked_fill(MASK == 0, -100)}
CAUSAL = {"task_type": "CAUSAL_LM", "num_virtual_tokens": 3}

CONFIGS = {
    "prompt-random": PromptTuningConfig(**CAUSAL),
    "prompt-sample-vocab": PromptTuningConfig(**CAUSAL, prompt_tuning_init="SAMPLE_VOCAB"),
    "prefix": PrefixTuningConfig(**CAUSAL),
    "prefix-projection": PrefixTuningConfig(**CAUSAL, prefix_projection=True, encoder_hidden_size=8),
    "p-tuning-mlp": PromptEncoderConfig(**CAUSAL, encoder_hidden_size=12),
    "p-tuning-lstm": PromptEncoderConfig(**CAUSAL, encoder_reparameterization_type="LSTM", encoder_num_layers=2, encoder_hidden_size=6),
}
MODELS = {"llama": models.tiny_llama, "gpt2": models.tiny_gpt2}
CASES = [pytest.param(m, c, id=f"{m}-{c}") for m in MODELS for c in CONFIGS]


def _twins(model: str, config: str) -> tuple[nn.Module, nn.Module]:
    """(ours, peft's) on identical bases; peft's prompt encoder gets our encoder's weights."""
    base = MODELS[model]()
    ours = peft_core.get_peft_model(copy.deepcopy(base), copy.deepcopy(CONFIGS[config]))
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(CONFIGS[config]))
    theirs.prompt_encoder["default"].load_state_dict(ours.base_model.prompt_encoder["default"].state_dict())
    return ours.eval(), theirs.eval()


def _greedy(model: nn.Module, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding by full forward passes (no cache): the reference generate must reproduce."""
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.oracle
@pytest.mark.parametrize(("model", "config"), CASES)
def test_outputs_match_peft(model: str, config: str) -> None:
    ours, theirs = _twins(model, config)
    with torch.no_grad():
        mine, their = ours(**INPUTS), theirs(**INPUTS)
        with ours.disable_adapter():
            plain = ours(**INPUTS)
    virtual = 0 if config.startswith("prefix") else 3
    assert mine.logits.shape[1] == IDS.shape[1] + virtual  # virtual token positions come back as logits, as in peft
    torch.testing.assert_close(mine.logits, their.logits, **TOL)
    torch.testing.assert_close(mine.loss, their.loss, **TOL)
    assert plain.logits.shape[1] == IDS.shape[1]
    assert not torch.allclose(mine.logits[:, -IDS.shape[1] :], plain.logits, **TOL), "the prompt must change the outputs"


@pytest.mark.oracle
@pytest.mark.parametrize(("model", "config"), CASES)
def test_checkpoints_hold_peft_prompt_embeddings_and_load_both_ways(model: str, config: str, tmp_path) -> None:
    ours, theirs = _twins(model, config)
    expected = outputs(ours, INPUTS)
    mine = peft_core.get_peft_model_state_dict(ours)
    assert list(mine) == ["prompt_embeddings"]
    torch.testing.assert_close(mine["prompt_embeddings"], peft.get_peft_model_state_dict(theirs)["prompt_embeddings"], **TOL)

    ours.save_pretrained(tmp_path / "ours")
    their_loaded = peft.PeftModel.from_pretrained(MODELS[model](), tmp_path / "ours").eval()
    torch.testing.assert_close(outputs(their_loaded, INPUTS), expected, **TOL)

    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(MODELS[model](), tmp_path / "theirs")
    torch.testing.assert_close(outputs(ours_loaded, INPUTS), expected, **TOL)
    # loaded for inference, the encoder's output sits in the embedding table and is saved as it is
    torch.testing.assert_close(peft_core.get_peft_model_state_dict(ours_loaded)["prompt_embeddings"], mine["prompt_embeddings"])

    saved_ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(saved_ours) - {"peft_version"} == set(saved_theirs) - {"peft_version"}
    for key in ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "num_transformer_submodules", "inference_mode"):
        assert saved_ours[key] == saved_theirs[key], key


@pytest.mark.oracle
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("config", ["prompt-random", "prefix", "prefix-projection", "p-tuning-lstm"])
def test_generate_is_greedy_decoding_of_peft_forward(model: str, config: str) -> None:
    """peft 0.21.2's own generate disagrees with its forward under transformers 5.x (it looks for `past_key_values`
    and `cache_position`, renamed there), so the reference is a greedy loop over peft's forward, which agrees with ours."""
    ours, theirs = _twins(model, config)
    for m in (ours, theirs):
        m.get_base_model().generation_config.eos_token_id = None  # decode a fixed number of tokens
        m.get_base_model().generation_config.pad_token_id = 0
    ids = IDS[:, :4]
    generated = ours.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, _greedy(theirs, ids, 6))
    with ours.disable_adapter():
        plain = ours.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert torch.equal(plain, _greedy(ours.get_base_model(), ids, 6))


@pytest.mark.oracle
def test_generate_with_left_padding_matches_forward_for_prompt_tuning() -> None:
    """A left-padded batch decodes as forward sees it (positions counted from the first virtual token)."""
    ours, theirs = _twins("llama", "p-tuning-mlp")
    ours.get_base_model().generation_config.eos_token_id = None
    ours.get_base_model().generation_config.pad_token_id = 0
    generated = ours.generate(input_ids=IDS, attention_mask=MASK, max_new_tokens=4, do_sample=False)
    ids, mask = IDS, MASK
    for _ in range(4):
        with torch.no_grad():
            nxt = theirs(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    assert torch.equal(generated, ids)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "config",
    [*CONFIGS.values(), PrefixTuningConfig(num_virtual_tokens=5, init_weights="zero", token_dim=16, num_layers=2, num_attention_heads=2)],
    ids=[*CONFIGS, "prefix-zero-explicit-sizes"],
)
def test_config_json_round_trips_through_peft(config) -> None:
    check_config_round_trip(config)


def test_text_init_starts_from_the_texts_token_embeddings(tmp_path, peft) -> None:
    """TEXT init with a tokenizer from a local folder: the text's ids, repeated to fill the prompt, as peft does."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    words = ["classify", "the", "sentiment", "of", "review"]
    tok = Tokenizer(tok_models.WordLevel({w: i + 3 for i, w in enumerate(words)} | {"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=7, prompt_tuning_init="TEXT", prompt_tuning_init_text="classify the review", tokenizer_name_or_path=str(tmp_path)
    )
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), copy.deepcopy(config))
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(config))
    table = ours.base_model.prompt_encoder["default"].embedding.weight
    expected_ids = torch.tensor([3, 4, 7, 3, 4, 7, 3])
    torch.testing.assert_close(table, base.get_input_embeddings().weight[expected_ids], rtol=0, atol=0)
    torch.testing.assert_close(table, theirs.prompt_encoder["default"].embedding.weight, rtol=0, atol=0)


def test_text_init_with_a_missing_tokenizer_says_which_folder(tmp_path) -> None:
    config = PromptTuningConfig(
        task_type="CAUSAL_LM", prompt_tuning_init="TEXT", prompt_tuning_init_text="hi", tokenizer_name_or_path=str(tmp_path / "nothing-here")
    )
    with pytest.raises(peft_core.ConfigError, match="tokenizer_name_or_path: cannot load a tokenizer from .*nothing-here"):
        peft_core.get_peft_model(models.tiny_llama(), config)


def test_bad_settings_are_refused_with_every_problem_named() -> None:
    with pytest.raises(peft_core.ConfigError) as info:
        PromptTuningConfig(num_virtual_tokens=0, prompt_tuning_init="TEXT")
    text = str(info.value)
    assert "num_virtual_tokens: must be >= 1" in text
    assert "tokenizer_name_or_path: required" in text and "prompt_tuning_init_text: required" in text
    with pytest.raises(peft_core.ConfigError, match="encoder_reparameterization_type: 'GRU' is not one of"):
        PromptEncoderConfig(encoder_reparameterization_type="GRU")
    with pytest.raises(peft_core.ConfigError, match="task_type: prompt learning in peft_core supports CAUSAL_LM, SEQ_CLS, got 'SEQ_2_SEQ_LM'"):
        peft_core.get_peft_model(models.tiny_t5(), PromptTuningConfig(task_type="SEQ_2_SEQ_LM"))
    with pytest.raises(peft_core.ConfigError, match="BertForSequenceClassification.forward takes none; use prompt tuning or p-tuning"):
        peft_core.get_peft_model(models.tiny_bert(), PrefixTuningConfig(task_type="SEQ_CLS"))


def test_settings_that_do_not_fit_the_model_are_refused_at_wrap_time() -> None:
    with pytest.raises(peft_core.ConfigError, match="num_transformer_submodules: CAUSAL_LM models have one transformer stack, got 2"):
        peft_core.get_peft_model(models.tiny_llama(), PromptTuningConfig(**CAUSAL, num_transformer_submodules=2))
    with pytest.raises(peft_core.ConfigError, match="token_dim: 30 is not divisible by num_attention_heads 4"):
        peft_core.get_peft_model(models.tiny_gpt2(), PrefixTuningConfig(**CAUSAL, token_dim=30))


def test_prefix_tuning_refuses_gradient_checkpointing() -> None:
    model = models.tiny_llama()
    model.gradient_checkpointing_enable()
    with pytest.raises(peft_core.ConfigError, match="gradient checkpointing"):
        peft_core.get_peft_model(model, PrefixTuningConfig(**CAUSAL))


@pytest.mark.parametrize("config", ["prompt-random", "prefix", "p-tuning-lstm"])
def test_merge_is_refused_clearly(config: str) -> None:
    model = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(CONFIGS[config]))
    before = outputs(model.eval(), INPUTS)
    for call in (model.merge_and_unload, model.merge_adapter):
        with pytest.raises(peft_core.MergeError, match="cannot be merged into the base weights: the prompt is extra input"):
            call()
    torch.testing.assert_close(outputs(model, INPUTS), before, rtol=0, atol=0)


@pytest.mark.parametrize("config", ["prompt-random", "prefix", "prefix-projection", "p-tuning-mlp", "p-tuning-lstm"])
def test_training_lowers_the_loss_and_changes_only_the_prompt(config: str) -> None:
    torch.manual_seed(0)
    model = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(CONFIGS[config]))
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("base_model.prompt_encoder.default.") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    saved_before = peft_core.get_peft_model_state_dict(model)["prompt_embeddings"].clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(15):
        loss = model(**INPUTS).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and changed <= trainable
    assert not torch.equal(peft_core.get_peft_model_state_dict(model)["prompt_embeddings"], saved_before)


@pytest.mark.oracle
@pytest.mark.parametrize(("first", "second"), [("prompt-random", "prompt-sample-vocab"), ("prefix", "prefix-projection"), ("p-tuning-mlp", "p-tuning-lstm")])
def test_two_adapters_on_one_model(first: str, second: str) -> None:
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), copy.deepcopy(CONFIGS[first]))
    ours.add_adapter("other", copy.deepcopy(CONFIGS[second]))
    assert ours.active_adapter == "default"
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(CONFIGS[first]))
    theirs.add_adapter("other", oracle_config(CONFIGS[second]))
    for name in ("default", "other"):
        theirs.prompt_encoder[name].load_state_dict(ours.base_model.prompt_encoder[name].state_dict())
    ours.eval()
    theirs.eval()
    seen = []
    for name in ("other", "default"):
        ours.set_adapter(name)
        theirs.set_adapter(name)
        seen.append(outputs(ours, INPUTS))
        torch.testing.assert_close(seen[-1], outputs(theirs, INPUTS), **TOL)
    assert not torch.allclose(seen[0], seen[1], **TOL)
    with pytest.raises(peft_core.AdapterNotFoundError, match="no adapter named 'missing'"):
        ours.set_adapter("missing")
    ours.delete_adapter("other")
    assert list(ours.peft_config) == ["default"]
    assert not [n for n, _ in ours.named_parameters() if ".other." in n]
    torch.testing.assert_close(outputs(ours, INPUTS), seen[1], **TOL)


def test_a_trained_encoder_cannot_be_resumed_from_its_output(tmp_path) -> None:
    """A checkpoint holds the encoder's output only: loading it into a training encoder (MLP/LSTM, prefix
    projection) would silently put outputs where inputs belong, so it is refused in words."""
    model = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(CONFIGS["p-tuning-mlp"]))
    model.save_pretrained(tmp_path)
    fresh = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(CONFIGS["p-tuning-mlp"]))
    with pytest.raises(peft_core.CheckpointError, match="holds only its output .*cannot be rebuilt"):
        peft_core.set_peft_model_state_dict(fresh, peft_core.load_peft_weights(tmp_path))
    with pytest.raises(peft_core.CheckpointError, match="load it for inference"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path, is_trainable=True)


def test_a_prompt_table_loads_trainable(tmp_path) -> None:
    """Prompt tuning's checkpoint is its whole adapter: it loads with is_trainable=True (peft refuses) and trains on."""
    model = peft_core.get_peft_model(models.tiny_llama(), copy.deepcopy(CONFIGS["prompt-random"]))
    model.save_pretrained(tmp_path)
    loaded = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path, is_trainable=True)
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == ["base_model.prompt_encoder.default.embedding.weight"]
    torch.testing.assert_close(outputs(loaded.eval(), INPUTS), outputs(model.eval(), INPUTS), rtol=0, atol=0)


@pytest.mark.parametrize("config", list(CONFIGS) + ["p-tuning-lstm-3"])
@pytest.mark.parametrize("model", list(MODELS))
def test_parameter_count_from_the_shape_equals_the_real_encoder(model: str, config: str) -> None:
    """The torch-free count (what the studio shows before Start) equals the trainable numel after wrapping;
    the Llama has grouped-query attention, so prefix tuning sizes its prefixes per KV head."""
    cfg = CONFIGS.get(config) or PromptEncoderConfig(**CAUSAL, encoder_reparameterization_type="LSTM", encoder_num_layers=3, encoder_hidden_size=5)
    base = MODELS[model]()
    counted = cfg.trainable_parameter_count(describe_model(base))
    wrapped = peft_core.get_peft_model(base, copy.deepcopy(cfg))
    assert counted == sum(p.numel() for p in wrapped.parameters() if p.requires_grad) > 0


def test_inject_adapter_in_model_refuses_prompt_learning() -> None:
    with pytest.raises(peft_core.ConfigError, match="adds no layers to inject .* use get_peft_model"):
        peft_core.inject_adapter_in_model(PromptTuningConfig(**CAUSAL), models.tiny_llama())



# ---------------------------------------------------------------------------------------------- SEQ_CLS


def tiny_llama_cls() -> nn.Module:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=0)
    return LlamaForSequenceClassification(cfg).eval()


CLS_MODELS = {"bert": (models.tiny_bert, "classifier"), "llama": (tiny_llama_cls, "score")}
CLS_INPUTS = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS), "labels": torch.tensor([0, 2])}
CLS_CONFIGS = {
    "prompt": PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3),
    "p-tuning-mlp": PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=3, encoder_hidden_size=12),
    "p-tuning-lstm": PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=3, encoder_reparameterization_type="LSTM"),
}
CLS_CASES = [pytest.param(m, c, id=f"{m}-{c}") for m in CLS_MODELS for c in CLS_CONFIGS]


def _cls_twins(model: str, config: str) -> tuple[nn.Module, nn.Module]:
    """SEQ_CLS twins: prompt encoder and the trained head copy (randomised, so it matters) copied into peft."""
    make, head = CLS_MODELS[model]
    base = make()
    ours = peft_core.get_peft_model(copy.deepcopy(base), copy.deepcopy(CLS_CONFIGS[config]))
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(CLS_CONFIGS[config]))
    our_head = getattr(ours.get_base_model(), head).modules_to_save["default"]
    with torch.no_grad():
        for p in our_head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    theirs.prompt_encoder["default"].load_state_dict(ours.base_model.prompt_encoder["default"].state_dict())
    getattr(theirs.get_base_model(), head).modules_to_save["default"].load_state_dict(our_head.state_dict())
    return ours.eval(), theirs.eval()


@pytest.mark.oracle
@pytest.mark.parametrize(("model", "config"), CLS_CASES)
def test_sequence_classification_matches_peft(model: str, config: str, tmp_path) -> None:
    ours, theirs = _cls_twins(model, config)
    inputs = dict(CLS_INPUTS, token_type_ids=torch.zeros_like(IDS)) if model == "bert" else CLS_INPUTS
    with torch.no_grad():
        mine, their = ours(**inputs), theirs(**inputs)
        with ours.disable_adapter():
            plain = ours(**inputs)
    torch.testing.assert_close(mine.logits, their.logits, **TOL)
    torch.testing.assert_close(mine.loss, their.loss, **TOL)
    assert not torch.allclose(mine.logits, plain.logits, **TOL)
    head = CLS_MODELS[model][1]
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in ours.named_parameters() if n.startswith(("base_model.prompt_encoder.default.", f"base_model.model.{head}.modules_to_save.default."))}

    state, their_state = peft_core.get_peft_model_state_dict(ours), peft.get_peft_model_state_dict(theirs)
    assert sorted(state) == sorted(their_state) == sorted(["prompt_embeddings", f"base_model.{head}.weight", *([f"base_model.{head}.bias"] if model == "bert" else [])])
    for key in state:
        torch.testing.assert_close(state[key], their_state[key], **TOL)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    make = CLS_MODELS[model][0]
    torch.testing.assert_close(outputs(peft.PeftModel.from_pretrained(make(), tmp_path / "ours").eval(), inputs), mine.logits, **TOL)
    torch.testing.assert_close(outputs(peft_core.PeftModel.from_pretrained(make(), tmp_path / "theirs"), inputs), mine.logits, **TOL)


def test_prefix_tuning_classifies_with_a_cache_taking_model(tmp_path) -> None:
    """Prefix tuning on LlamaForSequenceClassification (peft 0.21.2 fails here under transformers 5.x: it looks
    for a `past_key_values` argument): the prefix changes the logits, and a save/load round trip keeps them."""
    model = peft_core.get_peft_model(tiny_llama_cls(), PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)).eval()
    logits = outputs(model, CLS_INPUTS)
    with model.disable_adapter():
        assert not torch.allclose(outputs(model, CLS_INPUTS), logits, **TOL)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(outputs(peft_core.PeftModel.from_pretrained(tiny_llama_cls(), tmp_path), CLS_INPUTS), logits, **TOL)


def test_sequence_classification_trains_prompt_and_head() -> None:
    torch.manual_seed(0)
    model = peft_core.get_peft_model(models.tiny_bert(), copy.deepcopy(CLS_CONFIGS["prompt"]))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(10):
        loss = model(**CLS_INPUTS).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".classifier.modules_to_save.default." in n for n in changed)


@pytest.mark.parametrize("model", list(CLS_MODELS))
def test_sequence_classification_parameter_count(model: str) -> None:
    """The count covers the head copy when modules_to_save names it (the studio's form passes it)."""
    make, head = CLS_MODELS[model]
    config = PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=3, modules_to_save=[head])
    base = make()
    counted = config.trainable_parameter_count(describe_model(base))
    wrapped = peft_core.get_peft_model(base, copy.deepcopy(config))
    assert counted == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
