"""AdaLoRA and VeRA on a bitsandbytes 4-bit and 8-bit tiny Llama on CPU, through the same layer classes
as on nn.Linear (the base-layer view), with peft on the quantized model as the oracle (peft runs both
methods on bnb layers). Reuses test_quantized_tuners.py's tiny model and helpers."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

import peft_core  # noqa: E402
from peft_core.training import is_quantized_model  # noqa: E402
from peft_core.tuners.adalora import AdaLoraConfig  # noqa: E402
from peft_core.tuners.vera import VeraConfig  # noqa: E402
from tests.peft_core.oracle import oracle_config, peft  # noqa: E402
from tests.peft_core.test_quantized import load_quantized, logits  # noqa: E402
from tests.peft_core.tuners.test_quantized_tuners import TOL, base_dir, ours_model  # noqa: E402, F401  (fixture)

ADALORA = AdaLoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", init_r=4, target_r=2, total_step=10, init_lora_weights=False)
VERA = VeraConfig(task_type="CAUSAL_LM", target_modules="all-linear", r=8, init_weights=False)
CASES = [("adalora", ADALORA, "4bit-nf4"), ("adalora-8bit", ADALORA, "8bit"), ("vera", VERA, "4bit-nf4"), ("vera-8bit", VERA, "8bit")]
IDS = [c[0] for c in CASES]


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outputs_and_checkpoints_match_peft(base_dir, case, tmp_path):  # noqa: F811
    _, config, quantization = case
    ours = ours_model(base_dir, config, quantization)
    assert is_quantized_model(ours)
    expected = logits(ours)
    with ours.disable_adapter():
        assert not torch.allclose(logits(ours), expected, **TOL)

    theirs = peft.get_peft_model(load_quantized(base_dir, quantization), oracle_config(config)).train()
    state = peft_core.get_peft_model_state_dict(ours)
    assert sorted(state) == sorted(peft.get_peft_model_state_dict(theirs))
    assert not peft.set_peft_model_state_dict(theirs, state).unexpected_keys
    torch.testing.assert_close(logits(theirs), expected, **TOL)

    ours.save_pretrained(tmp_path / "ours")
    their_loaded = peft.PeftModel.from_pretrained(load_quantized(base_dir, quantization), tmp_path / "ours").train()
    torch.testing.assert_close(logits(their_loaded), expected, **TOL)
    theirs.save_pretrained(tmp_path / "theirs")
    ours_loaded = peft_core.PeftModel.from_pretrained(load_quantized(base_dir, quantization), tmp_path / "theirs").train()
    torch.testing.assert_close(logits(ours_loaded), expected, **TOL)


@pytest.mark.parametrize("case", CASES[::2], ids=IDS[::2])
def test_dequantized_merge_is_exact(base_dir, case):  # noqa: F811
    _, config, quantization = case
    model = ours_model(base_dir, config, quantization)
    expected = logits(model)
    merged = model.merge_and_unload(dequantize=True)
    assert type(merged.model.layers[0].self_attn.v_proj) is torch.nn.Linear
    torch.testing.assert_close(logits(merged), expected, **TOL)
