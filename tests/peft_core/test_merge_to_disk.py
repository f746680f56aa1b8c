"""Shard-by-shard merge of an adapter into a saved base model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import peft_core
from peft_core.merge_to_disk import merge_adapter_to_disk
from tests.peft_core import models

INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**INPUT).logits


@pytest.fixture
def sharded_base(tmp_path):
    path = tmp_path / "base"
    models.tiny_llama().save_pretrained(path, max_shard_size="20KB")
    assert len(list(path.glob("model-*.safetensors"))) > 2
    return path


@pytest.mark.parametrize(
    "config",
    [
        dict(target_modules="all-linear", init_lora_weights=False),
        dict(target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True, init_lora_weights=False),
        dict(target_modules=["q_proj", "embed_tokens"], init_lora_weights=False, bias="lora_only"),
        dict(target_modules=["gate_proj"], init_lora_weights=False, modules_to_save=["lm_head"], use_rslora=True),
    ],
    ids=["all-linear", "dora", "embedding-and-bias", "modules-to-save"],
)
def test_merged_folder_loads_with_transformers_alone_and_matches(sharded_base, tmp_path, config):
    base = AutoModelForCausalLM.from_pretrained(sharded_base)
    model = peft_core.get_peft_model(base, peft_core.LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **config))
    with torch.no_grad():  # make trained biases / head copies differ from the base
        for name, p in model.named_parameters():
            if p.requires_grad and ("bias" in name or "modules_to_save" in name):
                p.add_(0.05)
    expected = logits(model.eval())
    model.save_pretrained(tmp_path / "adapter")

    seen = []
    stats = merge_adapter_to_disk(sharded_base, tmp_path / "adapter", tmp_path / "merged", progress=lambda i, n, name: seen.append((i, n)))
    assert seen[-1][0] == seen[-1][1] == stats["shards"]
    assert json.loads((tmp_path / "merged" / "model.safetensors.index.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(logits(merged), expected, rtol=1e-4, atol=1e-4)


def test_refuses_an_adapter_for_another_model(sharded_base, tmp_path):
    other = peft_core.get_peft_model(models.tiny_llama(hidden_size=64, intermediate_size=128), peft_core.LoraConfig(target_modules=["q_proj"], init_lora_weights=False))
    other.save_pretrained(tmp_path / "adapter")
    with pytest.raises(peft_core.CheckpointError, match="do not fit|does not fit"):
        merge_adapter_to_disk(sharded_base, tmp_path / "adapter", tmp_path / "merged")


def test_missing_weights_are_explained(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    model = peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(peft_core.CheckpointError, match="no safetensors weights"):
        merge_adapter_to_disk(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
