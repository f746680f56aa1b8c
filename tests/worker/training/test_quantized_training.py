"""QLoRA from the job spec: the base loads through bitsandbytes, the adapter trains and loads back."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("bitsandbytes")

import peft_core  # noqa: E402
from app.jobspec import JobSpecError, parse_job_spec  # noqa: E402
from tests.worker.training.conftest import demo_spec  # noqa: E402
from worker.training import run_training  # noqa: E402


@pytest.mark.parametrize("quantization", ["4bit-nf4", "8bit"])
def test_a_quantized_demo_run_trains_and_saves_a_loadable_adapter(tmp_path, data_dir, demo_folder, recorder, quantization):
    # no eval pass: bitsandbytes' CPU inference kernel needs 4-bit layer widths divisible by 32, and the
    # demo model's MLP (344) is not; on a GPU this does not arise
    spec = demo_spec(max_steps=6, learning_rate=2e-3, quantization=quantization, eval_fraction=0.0)
    result = run_training(spec, tmp_path, recorder.hooks())
    losses = recorder.losses()
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(f"loaded in {quantization}" in line for line in recorder.logs)

    from transformers import AutoModelForCausalLM

    from peft_core.quantization import bitsandbytes_config

    base = AutoModelForCausalLM.from_pretrained(demo_folder, quantization_config=bitsandbytes_config(quantization), device_map="cpu")
    model = peft_core.PeftModel.from_pretrained(base, result["adapter_dir"])
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.view.quantized
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        adapted = model.train()(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain)


def test_quantization_choice_is_validated():
    with pytest.raises(JobSpecError, match="training.quantization"):
        parse_job_spec({"base_model": "demo", "method": {"peft_type": "LORA"}, "training": {"quantization": "3bit"}})
    assert parse_job_spec({"base_model": "demo", "method": {"peft_type": "LORA"}, "training": {"quantization": "4bit-fp4"}}).training.quantization == "4bit-fp4"
