"""peft_core.targeting and default_targets: which modules a config adapts, checked against peft.

Rules: a list entry is an exact name or a dotted suffix; a string is a full-match regex; "all-linear"
is every linear layer (GPT-2's Conv1D included) but the output head; exclude_modules, layers_to_transform
and layers_pattern narrow that; rank_pattern/alpha_pattern set per-module r and alpha.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import transformers

import peft_core
from peft_core import ConfigError, LoraConfig, NoMatchingModulesError
from peft_core.default_targets import DEFAULT_TARGETS
from peft_core.layer import AdapterLayer
from tests.peft_core import models

BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)


def gpt2_seq_cls() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, num_labels=2, pad_token_id=0)
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def roberta_seq_cls() -> nn.Module:
    torch.manual_seed(0)
    return transformers.RobertaForSequenceClassification(transformers.RobertaConfig(**BERT, num_labels=3)).eval()


def ours_adapted(model: nn.Module) -> list[str]:
    """Names (relative to the user model) of the modules our engine wrapped with an adapter layer."""
    return sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, AdapterLayer))


def peft_adapted(model: nn.Module) -> list[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, BaseTunerLayer))


def both(peft, factory: Callable[[], nn.Module], **kwargs) -> tuple[list[str], list[str]]:
    """(our adapted names, peft's adapted names) for the same model and LoraConfig kwargs."""
    base = factory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(**kwargs))
        theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**kwargs))
    return ours_adapted(ours), peft_adapted(theirs)


def adapted(factory: Callable[[], nn.Module], **kwargs) -> list[str]:
    return ours_adapted(peft_core.get_peft_model(factory(), LoraConfig(**kwargs)))


# ------------------------------------------------------------------------------------ list and regex


def test_list_entry_matches_exact_name_or_dotted_suffix():
    assert adapted(models.MLP, target_modules=["lin0"]) == ["lin0"]
    assert adapted(models.tiny_llama, target_modules=["self_attn.q_proj", "layers.1.mlp.up_proj"]) == [
        "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj", "model.layers.1.self_attn.q_proj",
    ]
    assert adapted(models.tiny_llama, target_modules=["model.layers.0.self_attn.k_proj"]) == ["model.layers.0.self_attn.k_proj"]


def test_list_entry_is_not_a_substring_or_a_regex():
    with pytest.raises(NoMatchingModulesError):
        adapted(models.tiny_llama, target_modules=["proj"])  # "q_proj" does not end with ".proj"
    with pytest.raises(NoMatchingModulesError):
        adapted(models.tiny_llama, target_modules=[".*q_proj"])


def test_string_is_a_full_match_regex():
    assert adapted(models.tiny_llama, target_modules=r"model\.layers\.0\..*_proj") == sorted(
        f"model.layers.0.{p}" for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    )
    with pytest.raises(NoMatchingModulesError):
        adapted(models.tiny_llama, target_modules=r"layers\.0")  # search would match, fullmatch does not


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    dict(target_modules=["q_proj", "v_proj"]),
    dict(target_modules=["self_attn.q_proj", "layers.1.mlp.up_proj"]),
    dict(target_modules=r".*\.(k_proj|down_proj)"),
    dict(target_modules=".*q_proj"),
], ids=["names", "suffixes", "regex-alternation", "regex-prefix"])
def test_list_and_regex_match_like_peft(peft, kwargs):
    ours, theirs = both(peft, models.tiny_llama, **kwargs)
    assert ours == theirs


# ----------------------------------------------------------------------------------------- all-linear


def test_all_linear_takes_conv1d_and_skips_the_lm_head():
    names = adapted(models.tiny_gpt2, target_modules="all-linear")
    assert "lm_head" not in names
    assert {n.split(".")[-1] for n in names} == {"c_attn", "c_proj", "c_fc"}
    assert len(names) == 2 * 4


@pytest.mark.parametrize("factory", [models.tiny_bert, gpt2_seq_cls, roberta_seq_cls], ids=["bert", "gpt2", "roberta"])
def test_all_linear_skips_classification_heads_even_without_task_type(factory):
    """peft adapts `classifier`/`score` when no task_type is given; a LoRA on a freshly initialised head
    is never what people want, so we leave the head alone either way."""
    names = adapted(factory, target_modules="all-linear")
    assert names and not any(n.split(".")[0] in ("classifier", "score") and n.count(".") == 0 for n in names)


@pytest.mark.oracle
@pytest.mark.parametrize("factory, task_type", [
    (models.tiny_llama, "CAUSAL_LM"),
    (models.tiny_gpt2, None),
    (models.tiny_t5, "SEQ_2_SEQ_LM"),
    (models.tiny_bert, "SEQ_CLS"),
    (gpt2_seq_cls, "SEQ_CLS"),
    (roberta_seq_cls, "SEQ_CLS"),
], ids=["llama", "gpt2", "t5", "bert-seq-cls", "gpt2-seq-cls", "roberta-seq-cls"])
def test_all_linear_matches_peft(peft, factory, task_type):
    ours, theirs = both(peft, factory, target_modules="all-linear", task_type=task_type)
    assert ours == theirs


def test_modules_inside_modules_to_save_are_never_targeted():
    """RoBERTa's head `classifier` holds Linear layers: with SEQ_CLS it is trained whole, so all-linear must
    not put adapters inside it (they would be copied into the trainable copy and the frozen original)."""
    model = peft_core.get_peft_model(roberta_seq_cls(), LoraConfig(target_modules="all-linear", task_type="SEQ_CLS"))
    names = ours_adapted(model)
    assert names and not any(n.startswith("classifier") for n in names)
    head = model.base_model.model.classifier
    assert not any(isinstance(m, AdapterLayer) for m in head.modules())


# ----------------------------------------------------------------------- exclude and layer selection


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    dict(target_modules=["q_proj", "v_proj"], exclude_modules=["layers.0.self_attn.q_proj"]),
    dict(target_modules=["q_proj", "v_proj"], exclude_modules=r".*layers\.1\..*"),
    dict(target_modules="all-linear", exclude_modules=["mlp.down_proj", "o_proj"]),
    dict(target_modules=["q_proj", "v_proj"], layers_to_transform=[1]),
    dict(target_modules=["q_proj", "v_proj"], layers_to_transform=0, layers_pattern="layers"),
    dict(target_modules=["q_proj", "down_proj"], layers_to_transform=[0, 1], layers_pattern=["layers"]),
], ids=["exclude-list", "exclude-regex", "all-linear-exclude", "layers", "layers-int-pattern", "layers-pattern-list"])
def test_exclude_and_layers_match_peft_on_llama(peft, kwargs):
    ours, theirs = both(peft, models.tiny_llama, **kwargs)
    assert ours == theirs
    assert ours


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    dict(target_modules=["q", "wo"], layers_to_transform=[1]),
    dict(target_modules=["q", "wo"], layers_to_transform=[1], layers_pattern="block"),
    dict(target_modules=["q"], layers_to_transform=[1], layers_pattern="layer"),
], ids=["first-number", "block", "layer"])
def test_layer_index_in_nested_numbering_matches_peft(peft, kwargs):
    """T5 names are encoder.block.<i>.layer.<j>...: the pattern decides which number is the layer."""
    ours, theirs = both(peft, models.tiny_t5, **kwargs)
    assert ours == theirs


def test_exclude_modules_removes_matches():
    names = adapted(models.tiny_llama, target_modules=["q_proj", "v_proj"], exclude_modules=["v_proj"])
    assert names == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]


# -------------------------------------------------------------------------------- rank/alpha patterns


def _r_and_scaling(model: nn.Module) -> dict[str, tuple[int, float]]:
    return {
        n.removeprefix("base_model.model."): (m.r["default"], round(float(m.scaling["default"]), 6))
        for n, m in model.named_modules()
        if hasattr(m, "r") and isinstance(m.r, dict) and "default" in m.r
    }


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    dict(rank_pattern={"q_proj": 2, r"layers\.1\.self_attn\.q_proj": 6}, alpha_pattern={"v_proj": 32}),
    dict(rank_pattern={r"layers\.1\.self_attn\.q_proj": 6, "q_proj": 2}),
    dict(rank_pattern={"^model.*down_proj": 2}, alpha_pattern={"mlp.up_proj": 3}),
    dict(rank_pattern={"self_attn.q_proj": 2, ".*0.*": 12}, alpha_pattern={"layers.0.self_attn.q_proj": 1}),
    dict(rank_pattern={"q_proj": 2}, use_rslora=True, alpha_pattern={"o_proj": 3}),
], ids=["name-and-regex", "regex-first", "anchored", "catch-all", "rslora"])
def test_rank_and_alpha_patterns_apply_like_peft(peft, kwargs):
    base = models.tiny_llama()
    config = dict(r=4, lora_alpha=8, target_modules="all-linear", **kwargs)
    ours = _r_and_scaling(peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(**config)))
    theirs = _r_and_scaling(peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**config)))
    assert ours == theirs
    assert len({v for v in ours.values()}) > 1  # the patterns did change something


def test_rank_pattern_sets_the_tensor_shapes():
    model = peft_core.get_peft_model(
        models.tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], rank_pattern={r"layers\.1\.self_attn\.v_proj": 2})
    )
    v1 = model.base_model.model.model.layers[1].self_attn.v_proj
    v0 = model.base_model.model.model.layers[0].self_attn.v_proj
    assert v1.lora_A["default"].weight.shape[0] == 2 and v0.lora_A["default"].weight.shape[0] == 4


# --------------------------------------------------------------------------------------- no matches


def test_regex_matching_nothing_names_real_modules_and_the_fix():
    with pytest.raises(NoMatchingModulesError) as info:
        adapted(models.tiny_llama, target_modules="q_proj")
    message = str(info.value)
    assert "'q_proj'" in message and "k_proj" in message and "embed_tokens" in message
    assert "whole module path" in message and "['q_proj']" in message


def test_list_matching_nothing_names_real_modules():
    with pytest.raises(NoMatchingModulesError) as info:
        adapted(models.tiny_gpt2, target_modules=["q_proj", "v_proj"])
    message = str(info.value)
    assert "q_proj" in message and "c_attn" in message and "c_fc" in message


def test_no_match_error_is_a_value_error_and_says_what_narrowed_it():
    with pytest.raises(ValueError, match=r"within layers \[7\]"):
        adapted(models.tiny_llama, target_modules=["q_proj"], layers_to_transform=[7])


def test_second_adapter_matching_nothing_raises():
    model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(NoMatchingModulesError):
        model.add_adapter("other", LoraConfig(target_modules=["query"]))
    assert list(model.peft_config) == ["default"]


def test_list_entry_matching_nothing_warns_with_its_name():
    with pytest.warns(UserWarning, match=r"\['qproj'\]") as record:
        names = adapted(models.tiny_llama, target_modules=["q_proj", "qproj"])
    assert names == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert not any("q_proj'" in str(w.message) and "qproj" not in str(w.message) for w in record)


def test_target_that_is_trained_whole_says_so_instead_of_typo():
    """With SEQ_CLS the head is in modules_to_save: targeting it too gives it no adapter (as in peft), and says why."""
    with pytest.warns(UserWarning, match=r"\['classifier'\] are trained whole as modules_to_save") as record:
        model = peft_core.get_peft_model(models.tiny_bert(), LoraConfig(task_type="SEQ_CLS", target_modules=["query", "classifier"]))
    assert not any("typo" in str(w.message) for w in record)
    assert not isinstance(model.base_model.model.classifier.modules_to_save["default"], AdapterLayer)


def test_no_warning_when_every_entry_matches():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapted(models.tiny_llama, target_modules=["q_proj", "v_proj"])


def test_missing_targets_without_default_say_what_to_do():
    with pytest.raises(ConfigError, match="name the modules to adapt"):
        peft_core.get_peft_model(models.MLP(), LoraConfig())


# ---------------------------------------------------------------------------- default targets by type

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
HEAD8 = {**SMALL, "head_dim": 8}
GPT2 = dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64)
T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
BART = dict(vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)

# model_type -> (config class, model class, tiny config kwargs)
MODEL_TYPES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", SMALL),
    "mistral": ("MistralConfig", "MistralForCausalLM", SMALL),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {**SMALL, "num_local_experts": 2, "num_experts_per_tok": 1}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", SMALL),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", HEAD8),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", HEAD8),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", HEAD8),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", HEAD8),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {**SMALL, "pad_token_id": 0}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", GPT2),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {k: v for k, v in SMALL.items() if k != "num_key_value_heads"}),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", {**GPT2, "rotary_dim": 4}),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                                num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32)),
    "falcon": ("FalconConfig", "FalconForCausalLM", dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(vocab_size=64, hidden_size=32, n_layer=2, n_head=4)),
    "bert": ("BertConfig", "BertModel", BERT),
    "roberta": ("RobertaConfig", "RobertaModel", BERT),
    "deberta-v2": ("DebertaV2Config", "DebertaV2Model", BERT),
    "t5": ("T5Config", "T5ForConditionalGeneration", T5),
    "mt5": ("MT5Config", "MT5ForConditionalGeneration", T5),
    "bart": ("BartConfig", "BartForConditionalGeneration", BART),
}

# Types where peft 0.21.2 has no default and ours is a deliberate addition: the expected leaf names.
OUR_ADDITIONS = {"phi3": {"qkv_proj"}}


def _build(model_type: str) -> nn.Module:
    config_cls, model_cls, kwargs = MODEL_TYPES[model_type]
    if not hasattr(transformers, config_cls) or not hasattr(transformers, model_cls):
        pytest.skip(f"{model_cls} is not in the installed transformers")
    config = getattr(transformers, config_cls)(**kwargs)
    assert config.model_type == model_type
    torch.manual_seed(0)
    return getattr(transformers, model_cls)(config)


def _peft_default_names(peft, model: nn.Module) -> list[str] | None:
    """peft's adapted names with its default targets; None where peft has no default for the type."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return peft_adapted(peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig()))
        except ValueError:
            table_entry = peft_table.get(model.config.model_type)
            if table_entry is None:
                return None
            # mixtral under transformers 5: peft 0.21.2 drops its own default while converting the MoE
            # config and then finds no targets; its table entry is still what it means to adapt.
            return peft_adapted(peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(target_modules=table_entry)))


@pytest.mark.oracle
@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_default_targets_match_peft(peft, model_type):
    model = _build(model_type)
    ours = ours_adapted(peft_core.get_peft_model(copy.deepcopy(model), LoraConfig()))
    theirs = _peft_default_names(peft, model)
    assert ours
    if theirs is None:
        assert {n.rsplit(".", 1)[-1] for n in ours} == OUR_ADDITIONS[model_type]
    else:
        assert ours == theirs


def test_every_table_entry_is_a_list_of_names_or_a_valid_regex():
    import re

    for model_type, targets in DEFAULT_TARGETS.items():
        if isinstance(targets, str):
            re.compile(targets)
        else:
            assert targets and all(isinstance(t, str) and t for t in targets), model_type


def test_multimodal_defaults_leave_the_vision_tower_alone():
    """Gemma 3 and Mllama use q_proj/v_proj in the vision tower too: the default adapts the language model only."""
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=28, patch_size=14)
    if not hasattr(transformers, "Gemma3ForConditionalGeneration"):
        pytest.skip("Gemma3ForConditionalGeneration is not in the installed transformers")
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    names = ours_adapted(peft_core.get_peft_model(transformers.Gemma3ForConditionalGeneration(config), LoraConfig()))
    assert names == ["model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.0.self_attn.v_proj"]
