"""LoRA against the peft oracle: same weights give the same outputs, checkpoints load both ways,
merging keeps outputs, training moves only adapter tensors."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import peft_core
from tests.peft_core import models
from tests.peft_core.oracle import outputs, peft, twin_models

VOCAB_INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}
SEQ2SEQ_INPUT = {**VOCAB_INPUT, "decoder_input_ids": torch.tensor([[0, 3, 5], [0, 7, 9]])}

# (id, model factory, inputs, LoraConfig kwargs)
CASES = [
    ("mlp-linear", models.MLP, torch.tensor([[1, 2, 3, 4, 5]]), dict(target_modules=["lin0"])),
    ("mlp-all-kinds", models.MLP, torch.tensor([[1, 2, 3, 4, 5]]), dict(target_modules=["lin0", "conv", "emb"])),
    ("mlp-dora-all-kinds", models.MLP, torch.tensor([[1, 2, 3, 4, 5]]), dict(target_modules=["lin0", "conv", "emb"], use_dora=True)),
    ("mlp-rslora-bias", models.MLP, torch.tensor([[1, 2, 3]]), dict(target_modules=["lin0", "conv"], use_rslora=True, lora_bias=True, r=4)),
    ("mlp-modules-to-save", models.MLP, torch.tensor([[1, 2, 3]]), dict(target_modules=["lin0"], modules_to_save=["head"])),
    ("mlp-bias-all", models.MLP, torch.tensor([[1, 2, 3]]), dict(target_modules=["lin0"], bias="all")),
    ("mlp-bias-lora-only", models.MLP, torch.tensor([[1, 2, 3]]), dict(target_modules=["lin0", "conv"], bias="lora_only")),
    ("convnet", models.ConvNet, torch.randn(2, 3, 5, 5), dict(target_modules=["conv2d", "conv3d", "lin"])),
    ("convnet-dora", models.ConvNet, torch.randn(2, 3, 5, 5), dict(target_modules=["conv2d", "conv3d"], use_dora=True)),
    ("llama-default-targets", models.tiny_llama, VOCAB_INPUT, dict(task_type="CAUSAL_LM")),
    ("llama-all-linear-dora", models.tiny_llama, VOCAB_INPUT, dict(task_type="CAUSAL_LM", target_modules="all-linear", use_dora=True)),
    ("llama-regex-patterns", models.tiny_llama, VOCAB_INPUT, dict(
        target_modules=r".*\.(q_proj|k_proj|down_proj)", rank_pattern={"down_proj": 2}, alpha_pattern={r"layers\.1\..*q_proj": 32},
    )),
    ("llama-layers-to-transform", models.tiny_llama, VOCAB_INPUT, dict(
        target_modules=["q_proj", "v_proj"], layers_to_transform=[1], layers_pattern="layers",
    )),
    ("gpt2-conv1d", models.tiny_gpt2, VOCAB_INPUT, dict(task_type="CAUSAL_LM", target_modules=["c_attn", "c_proj"])),
    ("gpt2-conv1d-dora", models.tiny_gpt2, VOCAB_INPUT, dict(target_modules=["c_attn"], use_dora=True)),
    ("bert-seq-cls", models.tiny_bert, VOCAB_INPUT, dict(task_type="SEQ_CLS")),
    ("t5-seq2seq", models.tiny_t5, SEQ2SEQ_INPUT, dict(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v", "wo"])),
]


def _config(kwargs: dict) -> peft_core.LoraConfig:
    kw = dict(r=4, lora_alpha=8, init_lora_weights=False)
    kw.update(kwargs)
    return peft_core.LoraConfig(**kw)


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_outputs_match_peft(case):
    _, factory, inputs, kwargs = case
    ours, theirs = twin_models(factory, _config(kwargs))
    assert sorted(peft_core.get_peft_model_state_dict(ours)) == sorted(peft.get_peft_model_state_dict(theirs))
    torch.testing.assert_close(outputs(ours, inputs), outputs(theirs, inputs), rtol=1e-5, atol=1e-5)
    with ours.disable_adapter(), theirs.disable_adapter():
        torch.testing.assert_close(outputs(ours, inputs), outputs(theirs, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_checkpoints_load_both_ways(case, tmp_path):
    _, factory, inputs, kwargs = case
    ours, theirs = twin_models(factory, _config(kwargs))
    expected = outputs(ours, inputs)

    ours.save_pretrained(tmp_path / "ours")
    peft_loaded = peft.PeftModel.from_pretrained(factory(), tmp_path / "ours")
    torch.testing.assert_close(outputs(peft_loaded, inputs), expected, rtol=1e-5, atol=1e-5)

    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(factory(), tmp_path / "theirs")
    torch.testing.assert_close(outputs(ours_loaded, inputs), expected, rtol=1e-5, atol=1e-5)

    saved_ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(saved_ours) - {"peft_version"} == set(saved_theirs) - {"peft_version"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_merge_and_unload_keeps_outputs(case):
    _, factory, inputs, kwargs = case
    model = peft_core.get_peft_model(factory(), _config(kwargs)).eval()
    expected = outputs(model, inputs)
    model.merge_adapter()
    torch.testing.assert_close(outputs(model, inputs), expected, rtol=1e-4, atol=1e-4)
    model.unmerge_adapter()
    torch.testing.assert_close(outputs(model, inputs), expected, rtol=1e-4, atol=1e-4)
    merged = model.merge_and_unload(safe_merge=True)
    assert not any(isinstance(m, peft_core.layer.AdapterLayer) for m in merged.modules())
    torch.testing.assert_close(outputs(merged, inputs), expected, rtol=1e-4, atol=1e-4)


def test_unload_restores_base_outputs():
    base = models.tiny_llama()
    reference = outputs(copy.deepcopy(base), VOCAB_INPUT)
    model = peft_core.get_peft_model(base, _config(dict(target_modules="all-linear")))
    assert not torch.allclose(outputs(model, VOCAB_INPUT), reference)
    restored = model.unload()
    torch.testing.assert_close(outputs(restored, VOCAB_INPUT), reference)


def test_training_changes_only_adapter_and_lowers_loss():
    torch.manual_seed(0)
    model = peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"input_ids": torch.randint(0, 64, (4, 16))}
    losses = []
    for _ in range(15):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == (name in trainable and "lora_A" in name or name in trainable and "lora_B" in name), name


def test_dora_zero_weight_row_is_finite():
    """peft issue #2049: an all-zero weight row made DoRA's norm 0 and the output NaN."""
    model = models.MLP()
    with torch.no_grad():
        model.lin0.weight[3].zero_()
        model.lin0.bias.zero_()
    peft_model = peft_core.get_peft_model(model, peft_core.LoraConfig(target_modules=["lin0"], use_dora=True))
    peft_model.train()
    out = peft_model(torch.tensor([[1, 2, 3]]))
    assert torch.isfinite(out).all()
    out.sum().backward()
    for name, p in peft_model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    merged = peft_model.merge_and_unload(safe_merge=True)
    assert torch.isfinite(merged.lin0.weight).all()


def test_dora_norm_follows_the_base_weights_device():
    """DoRA's norm is computed where the base weight lives, whatever device the adapter tensors are on
    at that moment (creating DoRA on a GPU model failed with a device mismatch, found on the H200).
    The meta device stands in for a second device on CPU-only machines."""
    from peft_core.tuners.lora.variants import DoRA

    peft_model = peft_core.get_peft_model(models.MLP(), peft_core.LoraConfig(target_modules=["lin0"], use_dora=True, init_lora_weights=False))
    layer = peft_model.base_model.model.lin0
    elsewhere = layer.view.get_weight(torch.float32).to("meta")
    norm = DoRA()._norm(layer, "default", elsewhere)
    assert norm.device.type == "meta" and norm.shape == (16,)
