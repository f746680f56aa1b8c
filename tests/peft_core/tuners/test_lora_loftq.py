"""LoftQ initialisation: the quantized base plus the adapter starts closer to the original weights
than the quantized base alone, and the base it writes is exactly what 4-bit loading stores."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM  # noqa: E402

import peft_core  # noqa: E402
from peft_core.quantization import bitsandbytes_config  # noqa: E402
from peft_core.tuners.lora.loftq import loftq_factors, nf4_round_trip  # noqa: E402
from tests.peft_core import models  # noqa: E402

INPUT = {"input_ids": torch.tensor([[1, 5, 9, 3, 7, 2], [4, 8, 15, 16, 23, 42]])}


def tiny():
    return models.tiny_llama(hidden_size=64, intermediate_size=128)


@pytest.mark.parametrize("bits", [4, 8])
def test_factors_reduce_quantization_error(bits):
    torch.manual_seed(0)
    weight = torch.randn(128, 64) * 0.05
    plain = (weight - (nf4_round_trip(weight) if bits == 4 else loftq_factors(weight, 1, 1.0, bits=8, iters=1)[0])).norm()
    errors = []
    for iters in (1, 4):
        q, a, b = loftq_factors(weight, rank=8, scaling=2.0, bits=bits, iters=iters)
        errors.append((weight - (q + 2.0 * b @ a)).norm())
    assert errors[0] < 0.95 * plain
    assert errors[1] <= errors[0] * 1.01
    if bits == 4:  # the new base is on the nf4 grid: quantizing it again changes nothing
        torch.testing.assert_close(nf4_round_trip(q), q)


def test_loftq_model_starts_closer_to_the_original_than_qlora(tmp_path):
    original = tiny()
    reference = original(**INPUT).logits.detach()
    original.save_pretrained(tmp_path / "original")

    config = peft_core.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights="loftq", loftq_config={"loftq_bits": 4, "loftq_iter": 2})
    peft_model = peft_core.get_peft_model(copy.deepcopy(original), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.unload().save_pretrained(tmp_path / "loftq-base")  # the base now holds Q

    def load_4bit(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant = bitsandbytes_config("4bit-nf4", double_quant=False)
            return AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, device_map="cpu").train()

    with torch.no_grad():
        qlora_error = (load_4bit(tmp_path / "original")(**INPUT).logits - reference).abs().mean()
        loftq = peft_core.PeftModel.from_pretrained(load_4bit(tmp_path / "loftq-base"), tmp_path / "adapter").train()
        loftq_error = (loftq(**INPUT).logits - reference).abs().mean()
    assert loftq_error < 0.8 * qlora_error, (loftq_error, qlora_error)


def test_loftq_config_is_validated():
    with pytest.raises(peft_core.ConfigError, match="loftq_bits must be 4 or 8"):
        peft_core.LoraConfig(init_lora_weights="loftq", loftq_config={"loftq_bits": 3})
    with pytest.raises(peft_core.ConfigError, match="only used with init_lora_weights='loftq'"):
        peft_core.LoraConfig(loftq_config={"loftq_bits": 4})


def test_loftq_refuses_an_already_quantized_layer(tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "m", quantization_config=bitsandbytes_config("4bit-nf4"), device_map="cpu")
    with pytest.raises(peft_core.UnsupportedLayerError, match="full-precision weights"):
        peft_core.get_peft_model(model, peft_core.LoraConfig(target_modules=["q_proj"], init_lora_weights="loftq"))


@pytest.mark.parametrize("init", ["pissa", "olora", "loftq"])
def test_loading_a_saved_adapter_never_rewrites_the_base(tmp_path, init):
    """Data-driven inits change the base weight when an adapter is created; loading saved tensors must not."""
    peft_core.get_peft_model(tiny(), peft_core.LoraConfig(target_modules=["q_proj"], init_lora_weights=init)).save_pretrained(tmp_path / "a")
    fresh = tiny()
    before = fresh.model.layers[0].self_attn.q_proj.weight.detach().clone()
    loaded = peft_core.PeftModel.from_pretrained(fresh, tmp_path / "a")
    torch.testing.assert_close(loaded.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight, before, rtol=0, atol=0)
    assert loaded.peft_config["default"].init_lora_weights == init  # the saved config is kept as it was
    loaded.load_adapter(tmp_path / "a", adapter_name="second")
    torch.testing.assert_close(loaded.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight, before, rtol=0, atol=0)
