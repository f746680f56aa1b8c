"""LoRA and DoRA on bitsandbytes 4-bit and 8-bit base layers (CPU), against the peft oracle.

The same tuner code runs on every base-layer view: these tests use the quantized views through the
ordinary LoRA layer classes. Comparisons run in train mode with dropout 0: on CPU, bitsandbytes repacks
4-bit weights on the first *inference* forward, and peft (0.21.2) then dequantizes the repacked bytes
wrongly (see test_dequantize_survives_cpu_repacking), so outputs after that point are not comparable.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM  # noqa: E402

import peft_core  # noqa: E402
from peft_core.base_layers import view_for  # noqa: E402
from peft_core.quantization import bitsandbytes_config  # noqa: E402
from tests.peft_core import models  # noqa: E402
from tests.peft_core.oracle import peft  # noqa: E402

INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}
QUANTS = ["4bit-nf4", "4bit-fp4", "8bit"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny Llama saved to disk (hidden 64: bnb's CPU 4-bit kernel needs rows of >= 64 values)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    models.tiny_llama(hidden_size=64, intermediate_size=128).save_pretrained(path)
    return path


def load_quantized(base_dir, quantization: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=bitsandbytes_config(quantization), device_map="cpu")
    return model.train()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**INPUT).logits


def lora_config(**kw) -> dict:
    config = dict(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    config.update(kw)
    return config


@pytest.mark.oracle
@pytest.mark.parametrize("quantization", QUANTS)
@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_outputs_and_checkpoints_match_peft(base_dir, quantization, use_dora, tmp_path):
    cfg = lora_config(use_dora=use_dora)
    ours = peft_core.get_peft_model(load_quantized(base_dir, quantization), peft_core.LoraConfig(**cfg))
    theirs = peft.get_peft_model(load_quantized(base_dir, quantization), peft.LoraConfig(**cfg))
    layer = ours.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.view.quantized and type(layer).__name__ == "LoraLinear"  # the plain LoRA layer class
    state = peft_core.get_peft_model_state_dict(ours)
    assert sorted(state) == sorted(peft.get_peft_model_state_dict(theirs))
    peft.set_peft_model_state_dict(theirs, state)
    expected = logits(ours)
    torch.testing.assert_close(expected, logits(theirs), rtol=1e-4, atol=1e-4)

    ours.save_pretrained(tmp_path / "ours")
    loaded = peft.PeftModel.from_pretrained(load_quantized(base_dir, quantization), tmp_path / "ours").train()
    torch.testing.assert_close(logits(loaded), expected, rtol=1e-4, atol=1e-4)
    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(load_quantized(base_dir, quantization), tmp_path / "theirs").train()
    torch.testing.assert_close(logits(ours_loaded), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.oracle
@pytest.mark.parametrize("quantization", QUANTS)
def test_merge_requantizes_like_peft(base_dir, quantization):
    cfg = lora_config()
    ours = peft_core.get_peft_model(load_quantized(base_dir, quantization), peft_core.LoraConfig(**cfg))
    theirs = peft.get_peft_model(load_quantized(base_dir, quantization), peft.LoraConfig(**cfg))
    peft.set_peft_model_state_dict(theirs, peft_core.get_peft_model_state_dict(ours))
    with pytest.warns(UserWarning, match="re-quantizes"):
        merged = ours.merge_and_unload()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_merged = theirs.merge_and_unload()
    assert isinstance(merged.model.layers[0].self_attn.q_proj, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))
    torch.testing.assert_close(logits(merged.train()), logits(their_merged.train()), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("quantization", QUANTS)
def test_merge_and_unload_dequantized_is_exact(base_dir, quantization):
    model = peft_core.get_peft_model(load_quantized(base_dir, quantization), peft_core.LoraConfig(**lora_config(use_dora=True)))
    expected = logits(model)
    merged = model.merge_and_unload(dequantize=True)
    q_proj = merged.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear
    # the non-adapted rest of the model is still quantized, so outputs match the adapted quantized model
    torch.testing.assert_close(logits(merged), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("quantization", QUANTS)
def test_unmerge_restores_weights_up_to_rounding(base_dir, quantization):
    model = peft_core.get_peft_model(load_quantized(base_dir, quantization), peft_core.LoraConfig(**lora_config(init_lora_weights=True)))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    before = layer.view.get_weight().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.merge_adapter()
        model.unmerge_adapter()
    # B = 0 at init: merge then unmerge only re-quantizes the same values
    torch.testing.assert_close(layer.view.get_weight(), before, rtol=0, atol=1e-5 if quantization != "8bit" else 2e-2)


def test_dequantize_survives_cpu_repacking(base_dir):
    model = load_quantized(base_dir, "4bit-nf4")
    layer = model.model.layers[0].self_attn.q_proj
    before = view_for(layer).get_weight().clone()
    model.eval()
    logits(model)  # first inference forward repacks the 4-bit bytes for the CPU kernel
    assert getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    torch.testing.assert_close(view_for(layer).get_weight(), before, rtol=0, atol=1e-3)


def test_qlora_training_lowers_loss(base_dir):
    torch.manual_seed(0)
    model = load_quantized(base_dir, "4bit-nf4")
    model = peft_core.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = peft_core.get_peft_model(model, peft_core.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad and p.dtype.is_floating_point}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    batch = torch.randint(0, 64, (4, 12))
    losses = []
    for _ in range(12):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2, losses
    for name, p in model.named_parameters():
        if name in frozen_before:
            assert torch.equal(frozen_before[name], p.detach()), name


def test_prepare_upcasts_half_precision_params_of_quantized_models(base_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, quantization_config=bitsandbytes_config("4bit-nf4"), device_map="cpu", dtype=torch.bfloat16
        )
    assert model.model.norm.weight.dtype == torch.bfloat16
    peft_core.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    assert model.model.norm.weight.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())


def test_unsupported_layer_type_is_named():
    with pytest.raises(peft_core.UnsupportedLayerError, match="LlamaRMSNorm"):
        peft_core.get_peft_model(models.tiny_llama(), peft_core.LoraConfig(target_modules=["input_layernorm"]))


def test_missing_bitsandbytes_gives_install_hint():
    code = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        return None if name.split('.')[0] != 'bitsandbytes' else (_ for _ in ()).throw(ImportError('blocked'))\n"
        "sys.meta_path.insert(0, B())\n"
        "import importlib.util\n"
        "importlib.util.find_spec = lambda name, *a, **k: None\n"
        "from peft_core.quantization import bitsandbytes_config\n"
        "try:\n"
        "    bitsandbytes_config('4bit-nf4')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "PeftCoreError" in out and "pip install" in out


def test_model_copy_is_independent(base_dir):
    """Adapting a deep copy leaves the original quantized model untouched (no shared quant state)."""
    model = load_quantized(base_dir, "8bit")
    reference = logits(model)
    peft_core.get_peft_model(copy.deepcopy(model), peft_core.LoraConfig(**lora_config())).merge_and_unload()
    torch.testing.assert_close(logits(model), reference)
