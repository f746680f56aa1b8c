"""Several named adapters on one model, saving and loading them, and the PeftModelFor<Task> classes.

Covers peft_core.peft_model, tuner_model (adapter bookkeeping, merge) and hub, checked against peft
where there is something to compare: directory trees, checkpoint keys, printed parameter counts.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.nn as nn
import transformers

import peft_core
from peft_core import AdapterNotFoundError, CheckpointError, ConfigError, LoraConfig, MergeError
from peft_core.auxiliary import ModulesToSaveWrapper
from peft_core.layer import AdapterLayer
from tests.peft_core import models
from tests.peft_core.oracle import outputs

IDS = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}
MLP_IN = torch.tensor([[1, 2, 3, 4, 5]])


def lora(**kwargs) -> LoraConfig:
    """A LoraConfig whose adapter changes outputs from the start (random A and B)."""
    return LoraConfig(**{"r": 4, "init_lora_weights": False, **kwargs})


def three_adapters() -> peft_core.PeftModel:
    model = peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj"]))
    model.add_adapter("other", lora(r=2, target_modules=["v_proj"]))
    model.add_adapter("third", lora(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    return model


def trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def file_tree(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, f), path) for root, _, files in os.walk(path) for f in files)


# ------------------------------------------------------------------------------- several adapters


def test_add_adapter_does_not_activate_it():
    model = peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj"]))
    before = outputs(model, IDS)
    model.add_adapter("other", lora(target_modules=["q_proj", "v_proj"]))
    assert model.active_adapters == ["default"] and model.active_adapter == "default"
    assert list(model.peft_config) == ["default", "other"]
    torch.testing.assert_close(outputs(model, IDS), before)
    assert trainable(model) and all(".default." in n for n in trainable(model))


def test_set_adapter_switches_outputs_and_what_trains():
    model = three_adapters()
    with_default = outputs(model, IDS)
    model.set_adapter("other")
    assert model.active_adapters == ["other"]
    assert all(".other." in n for n in trainable(model)) and trainable(model)
    with_other = outputs(model, IDS)
    assert not torch.allclose(with_default, with_other)
    model.set_adapter("default")
    torch.testing.assert_close(outputs(model, IDS), with_default)


def test_set_unknown_adapter_names_the_adapters_there_are():
    model = three_adapters()
    with pytest.raises(AdapterNotFoundError, match=r"'nope'.*\['default', 'other', 'third'\]"):
        model.set_adapter("nope")
    with pytest.raises(KeyError):  # AdapterNotFoundError is a KeyError, as a dict lookup would be
        model.set_adapter("nope")


def test_duplicate_adapter_name_is_refused():
    model = three_adapters()
    with pytest.raises(ConfigError, match="already exists"):
        model.add_adapter("other", lora(target_modules=["q_proj"]))


@pytest.mark.oracle
def test_several_active_adapters_add_up_like_peft(peft):
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), lora(target_modules=["q_proj", "v_proj"]))
    ours.add_adapter("other", lora(r=2, target_modules=["v_proj", "o_proj"]))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    theirs.add_adapter("other", peft.LoraConfig(r=2, target_modules=["v_proj", "o_proj"]))
    for name in ("default", "other"):
        peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours, adapter_name=name), adapter_name=name)
    ours.base_model.set_adapter(["default", "other"])
    theirs.base_model.set_adapter(["default", "other"])
    assert ours.active_adapters == ["default", "other"]
    torch.testing.assert_close(outputs(ours, IDS), outputs(theirs, IDS), rtol=1e-5, atol=1e-5)


def test_delete_inactive_adapter_removes_its_layers_only():
    model = three_adapters()
    before = outputs(model, IDS)
    model.delete_adapter("other")
    assert list(model.peft_config) == ["default", "third"] and model.active_adapters == ["default"]
    v_proj = model.base_model.model.model.layers[0].self_attn.v_proj
    assert type(v_proj) is nn.Linear  # the layer held only "other": the plain base layer is back
    torch.testing.assert_close(outputs(model, IDS), before)
    assert not any(".other." in k for k in model.state_dict())


def test_delete_active_adapter_activates_a_remaining_one():
    model = three_adapters()
    model.set_adapter("other")
    model.delete_adapter("other")
    assert model.active_adapters == ["default"] and model.active_adapter == "default"
    assert trainable(model) and all(".default." in n for n in trainable(model))


def test_deleting_every_adapter_gives_back_the_base_model():
    base = models.tiny_llama()
    reference = outputs(copy.deepcopy(base), IDS)
    model = peft_core.get_peft_model(base, lora(target_modules=["q_proj"], modules_to_save=["lm_head"]))
    model.add_adapter("other", lora(target_modules=["v_proj"]))
    model.delete_adapter("default")
    model.delete_adapter("other")
    assert model.active_adapters == [] and model.peft_config == {}
    assert not any(isinstance(m, AdapterLayer | ModulesToSaveWrapper) for m in model.modules())
    torch.testing.assert_close(outputs(model, IDS), reference)
    model.add_adapter("fresh", lora(target_modules=["k_proj"]))  # and the model takes a new adapter
    assert model.active_adapters == ["fresh"] and trainable(model)


def test_delete_unknown_adapter_names_the_adapters_there_are():
    with pytest.raises(AdapterNotFoundError, match=r"'nope'.*\['default', 'other', 'third'\]"):
        three_adapters().delete_adapter("nope")


def test_delete_merged_adapter_is_refused_before_touching_anything():
    model = three_adapters()
    model.merge_adapter()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MergeError, match="unmerge"):
        model.delete_adapter("default")
    assert list(model.peft_config) == ["default", "other", "third"]
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_disable_adapter_gives_base_outputs_and_restores_the_state():
    base = models.tiny_llama()
    reference = outputs(copy.deepcopy(base), IDS)
    model = peft_core.get_peft_model(base, lora(target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]))
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.add_(0.5)
    adapted = outputs(model, IDS)
    with model.disable_adapter():
        torch.testing.assert_close(outputs(model, IDS), reference)
    torch.testing.assert_close(outputs(model, IDS), adapted)

    with pytest.raises(RuntimeError, match="boom"), model.disable_adapter():
        raise RuntimeError("boom")
    torch.testing.assert_close(outputs(model, IDS), adapted)

    model.base_model.disable_adapter_layers()  # already disabled before entering: stays disabled
    with model.disable_adapter():
        pass
    torch.testing.assert_close(outputs(model, IDS), reference)
    model.base_model.enable_adapter_layers()
    torch.testing.assert_close(outputs(model, IDS), adapted)


# ---------------------------------------------------------------------------------- save and load


@pytest.mark.oracle
@pytest.mark.parametrize("selected", [None, ["other"], ["default", "third"]], ids=["all", "one-sub", "default-and-sub"])
def test_save_several_adapters_writes_the_same_tree_as_peft(tmp_path, peft, selected):
    ours = three_adapters()
    theirs = peft.get_peft_model(models.tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    theirs.add_adapter("other", peft.LoraConfig(r=2, target_modules=["v_proj"], init_lora_weights=False))
    theirs.add_adapter("third", peft.LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"], init_lora_weights=False))
    ours.save_pretrained(tmp_path / "ours", selected_adapters=selected)
    theirs.save_pretrained(tmp_path / "theirs", selected_adapters=selected)

    assert file_tree(tmp_path / "ours") == file_tree(tmp_path / "theirs")
    from safetensors.torch import load_file

    for sub in {os.path.dirname(f) for f in file_tree(tmp_path / "ours") if f.endswith(".safetensors")}:
        assert sorted(load_file(tmp_path / "ours" / sub / "adapter_model.safetensors")) == sorted(
            load_file(tmp_path / "theirs" / sub / "adapter_model.safetensors")
        )
        our_cfg = json.loads((tmp_path / "ours" / sub / "adapter_config.json").read_text())
        their_cfg = json.loads((tmp_path / "theirs" / sub / "adapter_config.json").read_text())
        for cfg in (our_cfg, their_cfg):
            cfg.pop("peft_version")
            cfg["target_modules"] = sorted(cfg["target_modules"])
        assert our_cfg == their_cfg
        assert our_cfg["inference_mode"] is True


def test_saving_an_unknown_adapter_writes_nothing(tmp_path):
    with pytest.raises(AdapterNotFoundError, match="nope"):
        three_adapters().save_pretrained(tmp_path / "out", selected_adapters=["default", "nope"])
    assert not (tmp_path / "out").exists()


def test_only_the_main_process_writes(tmp_path):
    three_adapters().save_pretrained(tmp_path / "out", is_main_process=False)
    assert not (tmp_path / "out").exists()


def test_saved_sub_folders_load_back_with_load_adapter(tmp_path):
    model = three_adapters()
    expected = {}
    for name in ("default", "other", "third"):
        model.set_adapter(name)
        expected[name] = outputs(model, IDS)
    model.save_pretrained(tmp_path)

    loaded = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path)
    assert isinstance(loaded, peft_core.PeftModel) and not trainable(loaded) and not loaded.training
    for name in ("other", "third"):
        missing, unexpected = loaded.load_adapter(tmp_path / name, adapter_name=name)
        assert (missing, unexpected) == ([], [])
        assert loaded.active_adapters == ["default"]  # loading does not activate
    via_subfolder = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path, subfolder="other", adapter_name="other")
    torch.testing.assert_close(outputs(via_subfolder, IDS), expected["other"])
    for name in ("default", "other", "third"):
        loaded.set_adapter(name)
        torch.testing.assert_close(outputs(loaded, IDS), expected[name])


def test_from_pretrained_is_trainable_unfreezes_the_adapter(tmp_path):
    peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj"])).save_pretrained(tmp_path)
    model = peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path, is_trainable=True)
    assert trainable(model) and all(".lora_" in n for n in trainable(model))
    assert model.peft_config["default"].inference_mode is False


@pytest.mark.oracle
def test_bin_checkpoints_are_written_and_read_both_ways(tmp_path, peft):
    base = models.tiny_llama()
    ours = peft_core.get_peft_model(copy.deepcopy(base), lora(target_modules=["q_proj", "v_proj"]))
    expected = outputs(ours, IDS)
    ours.save_pretrained(tmp_path / "ours", safe_serialization=False)
    assert "adapter_model.bin" in os.listdir(tmp_path / "ours")
    assert "adapter_model.safetensors" not in os.listdir(tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours")
    torch.testing.assert_close(outputs(theirs, IDS), expected)

    theirs.save_pretrained(tmp_path / "theirs", safe_serialization=False)
    assert "adapter_model.bin" in os.listdir(tmp_path / "theirs")
    back = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    torch.testing.assert_close(outputs(back, IDS), expected)


def test_model_card_has_the_hub_front_matter(tmp_path):
    base = models.tiny_llama()
    base.name_or_path = base.config._name_or_path = "my-org/tiny-llama"
    model = peft_core.get_peft_model(base, lora(target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path)
    text = (tmp_path / "README.md").read_text()
    front = text.split("---")[1]
    assert "library_name: peft" in front and "base_model: my-org/tiny-llama" in front
    assert "pipeline_tag: text-generation" in front
    assert "- base_model:adapter:my-org/tiny-llama\n- lora\n- transformers" in front
    (tmp_path / "README.md").write_text("my own card")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card"  # a card the user wrote is kept


def test_hub_repo_id_while_offline_is_a_checkpoint_error_naming_the_repo(no_network):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(CheckpointError) as info:
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), "some-org/adapter-that-is-not-cached")
    message = str(info.value)
    assert "'some-org/adapter-that-is-not-cached'" in message and "HF_HUB_OFFLINE" in message
    with pytest.raises(CheckpointError, match=r"some-org/other-adapter.*HF_HUB_OFFLINE"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), "some-org/other-adapter", config=lora(target_modules=["q_proj"]))


def test_folder_without_config_or_weights_is_a_clear_checkpoint_error(tmp_path):
    peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj"])).save_pretrained(tmp_path / "full")
    (tmp_path / "no_config").mkdir()
    os.rename(tmp_path / "full" / "adapter_model.safetensors", tmp_path / "no_config" / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match=r"adapter_config\.json not found in .*no_config.*adapter_model\.safetensors"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "no_config")
    with pytest.raises(CheckpointError, match=r"no adapter weights in .*full.*adapter_model\.safetensors or adapter_model\.bin"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "full")
    with pytest.raises(CheckpointError, match="not a folder on this machine"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "missing")


def test_corrupt_weights_file_is_a_checkpoint_error(tmp_path):
    peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj"])).save_pretrained(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path)


def test_weights_of_another_rank_are_refused_with_every_mismatch_listed(tmp_path):
    peft_core.get_peft_model(models.tiny_llama(), lora(r=8, target_modules=["q_proj"])).save_pretrained(tmp_path)
    config = peft_core.PeftConfig.from_pretrained(tmp_path)
    config.r = 2
    with pytest.raises(CheckpointError) as info:
        peft_core.PeftModel.from_pretrained(models.tiny_llama(), tmp_path, config=config)
    assert str(info.value).count("checkpoint (") == 4  # A and B of two layers


# ------------------------------------------------------------------ low-level API without a wrapper


@pytest.mark.oracle
def test_inject_adapter_in_model_keys_have_no_prefix_like_peft(peft):
    config = dict(r=4, target_modules=["lin0", "emb"], modules_to_save=["head"], init_lora_weights=False)
    ours = peft_core.inject_adapter_in_model(LoraConfig(**config), models.MLP())
    theirs = peft.inject_adapter_in_model(peft.LoraConfig(**config), models.MLP())
    assert isinstance(ours, models.MLP)
    our_keys = sorted(peft_core.get_peft_model_state_dict(ours))
    assert our_keys == sorted(peft.get_peft_model_state_dict(theirs))
    assert our_keys == ["emb.lora_embedding_A", "emb.lora_embedding_B", "head.bias", "head.weight", "lin0.lora_A.weight", "lin0.lora_B.weight"]
    assert sorted(n for n, p in ours.named_parameters() if p.requires_grad) == sorted(
        n for n, p in theirs.named_parameters() if p.requires_grad
    )


def test_state_dict_round_trip_without_wrapper_with_or_without_prefix():
    source = peft_core.inject_adapter_in_model(lora(target_modules=["lin0", "emb"], modules_to_save=["head"]), models.MLP())
    with torch.no_grad():
        source.head.modules_to_save["default"].weight.add_(1.0)
    state = peft_core.get_peft_model_state_dict(source)
    for keys in (state, {"base_model.model." + k: v for k, v in state.items()}):
        target = peft_core.inject_adapter_in_model(LoraConfig(r=4, target_modules=["lin0", "emb"], modules_to_save=["head"]), models.MLP())
        assert not torch.allclose(target(MLP_IN), source(MLP_IN))
        assert peft_core.set_peft_model_state_dict(target, keys) == ([], [])
        torch.testing.assert_close(target(MLP_IN), source(MLP_IN))


def test_state_dict_reports_missing_and_unexpected_keys():
    model = peft_core.inject_adapter_in_model(lora(target_modules=["lin0", "conv"]), models.MLP())
    state = peft_core.get_peft_model_state_dict(model)
    state.pop("conv.lora_B.weight")
    state["nowhere.lora_A.weight"] = torch.zeros(1)
    missing, unexpected = peft_core.set_peft_model_state_dict(model, state)
    assert missing == ["conv.lora_B.weight"] and unexpected == ["nowhere.lora_A.weight"]


# --------------------------------------------------------------------------------- modules_to_save


@pytest.mark.oracle
def test_modules_to_save_keys_training_and_merge(peft, tmp_path):
    config = dict(target_modules=["lin0"], modules_to_save=["head"], init_lora_weights=False)
    model = peft_core.get_peft_model(models.MLP(), LoraConfig(**config))
    theirs = peft.get_peft_model(models.MLP(), peft.LoraConfig(**config))
    assert sorted(peft_core.get_peft_model_state_dict(model)) == sorted(peft.get_peft_model_state_dict(theirs))
    assert "base_model.model.head.weight" in peft_core.get_peft_model_state_dict(model)

    wrapper = model.base_model.model.head
    assert isinstance(wrapper, ModulesToSaveWrapper)
    assert all(p.requires_grad for p in wrapper.modules_to_save["default"].parameters())
    assert not any(p.requires_grad for p in wrapper.original_module.parameters())
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = wrapper.original_module.weight.detach().clone()
    model(MLP_IN).pow(2).mean().backward()
    opt.step()
    trained = wrapper.modules_to_save["default"].weight.detach().clone()
    assert torch.equal(wrapper.original_module.weight, before) and not torch.equal(trained, before)

    model.eval()
    expected = outputs(model, MLP_IN)
    model.save_pretrained(tmp_path)
    theirs_loaded = peft.PeftModel.from_pretrained(models.MLP(), tmp_path)
    torch.testing.assert_close(outputs(theirs_loaded, MLP_IN), expected)
    merged = model.merge_and_unload()
    assert type(merged.head) is nn.Linear and torch.equal(merged.head.weight, trained)
    torch.testing.assert_close(outputs(merged, MLP_IN), expected, rtol=1e-5, atol=1e-5)


def test_modules_to_save_wrapper_exposes_the_module_attributes():
    """Model code reads head attributes (out_features, bias): the wrapper answers for the copy in use."""
    model = peft_core.get_peft_model(models.tiny_llama(), LoraConfig(target_modules=["q_proj"], modules_to_save=["lm_head"]))
    head = model.base_model.model.lm_head
    assert (head.in_features, head.out_features, head.bias) == (32, 64, None)
    assert head.weight is head.modules_to_save["default"].weight
    with model.disable_adapter():
        assert head.weight is head.original_module.weight
    with pytest.raises(AttributeError):
        head.no_such_attribute  # noqa: B018


# ----------------------------------------------------------------------------------------- tasks

BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)

TASKS = [
    ("CAUSAL_LM", "PeftModelForCausalLM", models.tiny_llama, None),
    ("SEQ_2_SEQ_LM", "PeftModelForSeq2SeqLM", models.tiny_t5, ["q", "v"]),
    ("SEQ_CLS", "PeftModelForSequenceClassification", models.tiny_bert, None),
    ("SEQ_CLS", "PeftModelForSequenceClassification",
     lambda: transformers.GPT2ForSequenceClassification(transformers.GPT2Config(
         vocab_size=64, n_embd=32, n_layer=1, n_head=4, n_positions=64, num_labels=2, pad_token_id=0)), None),
    ("TOKEN_CLS", "PeftModelForTokenClassification", lambda: transformers.BertForTokenClassification(transformers.BertConfig(**BERT)), None),
    ("QUESTION_ANS", "PeftModelForQuestionAnswering", lambda: transformers.BertForQuestionAnswering(transformers.BertConfig(**BERT)), None),
    ("FEATURE_EXTRACTION", "PeftModelForFeatureExtraction", lambda: transformers.BertModel(transformers.BertConfig(**BERT)), None),
]


@pytest.mark.oracle
@pytest.mark.parametrize("task, class_name, factory, targets", TASKS, ids=[f"{t[0]}-{i}" for i, t in enumerate(TASKS)])
def test_task_type_picks_the_class_and_heads_like_peft(peft, capsys, task, class_name, factory, targets):
    torch.manual_seed(0)
    base = factory()
    ours = peft_core.get_peft_model(copy.deepcopy(base), LoraConfig(r=4, task_type=task, target_modules=targets))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, task_type=task, target_modules=targets))
    assert type(ours).__name__ == type(theirs).__name__ == class_name
    assert isinstance(ours, getattr(peft_core, class_name))
    assert sorted(ours.peft_config["default"].modules_to_save or []) == sorted(theirs.peft_config["default"].modules_to_save or [])
    assert sorted(peft_core.get_peft_model_state_dict(ours)) == sorted(peft.get_peft_model_state_dict(theirs))

    ours.print_trainable_parameters()
    printed_ours = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert printed_ours == capsys.readouterr().out
    assert printed_ours.startswith("trainable params: ")
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()


@pytest.mark.oracle
def test_classification_head_is_saved_and_loads_in_peft(tmp_path, peft):
    model = peft_core.get_peft_model(models.tiny_bert(), LoraConfig(task_type="SEQ_CLS", init_lora_weights=False))
    with torch.no_grad():
        model.base_model.model.classifier.modules_to_save["default"].weight.mul_(3.0)
    expected = outputs(model.eval(), IDS)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    keys = sorted(k for k in load_file(tmp_path / "adapter_model.safetensors") if "lora_" not in k)
    assert keys == ["base_model.model.classifier.bias", "base_model.model.classifier.weight"]
    theirs = peft.PeftModel.from_pretrained(models.tiny_bert(), tmp_path)
    assert type(theirs).__name__ == "PeftModelForSequenceClassification"
    torch.testing.assert_close(outputs(theirs, IDS), expected, rtol=1e-5, atol=1e-5)


def test_heads_a_model_lacks_give_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        peft_core.get_peft_model(models.tiny_bert(), LoraConfig(task_type="SEQ_CLS"))  # has classifier, no score
    with pytest.warns(UserWarning, match="'pooler_typo'"):
        peft_core.get_peft_model(models.tiny_bert(), LoraConfig(task_type="SEQ_CLS", modules_to_save=["pooler_typo"]))


# ---------------------------------------------------------------------------------- merge, generate


def test_safe_merge_with_nan_raises_and_leaves_every_weight_untouched():
    model = peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj", "v_proj", "o_proj"]))
    with torch.no_grad():  # a late layer is corrupt: earlier layers must not be merged either
        model.base_model.model.model.layers[1].self_attn.v_proj.lora_A["default"].weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MergeError, match=r"model\.layers\.1\.self_attn\.v_proj.*nothing was merged"):
        model.merge_adapter(safe_merge=True)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) or (torch.isnan(v).any() and torch.equal(after[k].isnan(), v.isnan())) for k, v in before.items())
    assert not any(layer.merged_adapters for layer in model.base_model.adapter_layers())
    with pytest.raises(MergeError):
        model.merge_and_unload(safe_merge=True)
    assert any(isinstance(m, AdapterLayer) for m in model.modules())


def test_safe_merge_catches_nan_in_a_lora_bias():
    model = peft_core.get_peft_model(models.MLP(), lora(target_modules=["lin0"], lora_bias=True))
    with torch.no_grad():
        model.base_model.model.lin0.lora_B["default"].bias[0] = float("inf")
    with pytest.raises(MergeError):
        model.merge_adapter(safe_merge=True)
    assert not model.base_model.model.lin0.merged_adapters


def test_generate_uses_the_adapter():
    model = peft_core.get_peft_model(models.tiny_llama(), lora(target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"))
    assert isinstance(model, peft_core.PeftModelForCausalLM)
    prompt = torch.tensor([[1, 5, 9]])
    generated = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    assert generated.shape == (1, 9) and torch.equal(generated[:, :3], prompt)
    with model.disable_adapter():
        base_generated = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    merged = model.merge_and_unload()
    merged_generated = merged.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, merged_generated)
    assert base_generated.shape == generated.shape


def test_second_all_linear_adapter_does_not_wrap_adapter_internals():
    """all-linear on a model that already has LoRA layers adds to those layers; it never adapts their
    base_layer or their lora_A/lora_B linears."""
    from peft_core.layer import AdapterLayer
    from tests.peft_core.models import tiny_llama

    model = peft_core.get_peft_model(tiny_llama(), peft_core.LoraConfig(target_modules="all-linear"))
    layers_before = sum(isinstance(m, AdapterLayer) for m in model.modules())
    model.add_adapter("second", peft_core.LoraConfig(target_modules="all-linear"))
    assert sum(isinstance(m, AdapterLayer) for m in model.modules()) == layers_before
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert set(q_proj.adapter_names) == {"default", "second"}
    assert not isinstance(q_proj.base_layer, AdapterLayer)
