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
def test_a_quantized_demo_run_trains_evaluates_and_saves_a_loadable_adapter(tmp_path, data_dir, demo_folder, recorder, quantization):
    # with eval passes between steps: a 4-bit eval on a CPU with AVX512-BF16 used to fail inside bitsandbytes
    # ("N must be divisible by block_n": its packed inference kernel needs widths divisible by 32, the demo's MLP is 344)
    spec = demo_spec(max_steps=6, learning_rate=2e-3, quantization=quantization, eval_fraction=0.1, eval_every=2)
    result = run_training(spec, tmp_path, recorder.hooks())
    losses = recorder.losses()
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    evals = {row["step"]: row["eval_loss"] for row in recorder.metrics if row.get("eval_loss") is not None}
    assert sorted(evals) == [2, 4, 6] and all(torch.isfinite(torch.tensor(v)) for v in evals.values())
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


def test_evaluating_between_steps_does_not_change_4bit_training(tmp_path, data_dir, recorder):
    """The same 4-bit run with an eval after every step and with one eval at the end trains identically: eval
    leaves the layers in their training layout (bitsandbytes' CPU inference repacking would have cut the gradients)."""
    from tests.worker.training.conftest import Recorder

    spec = demo_spec(max_steps=4, learning_rate=2e-3, quantization="4bit-nf4", eval_fraction=0.1, eval_every=1)
    run_training(spec, tmp_path / "every-step", recorder.hooks())
    once = Recorder()
    run_training({**spec, "training": {**spec["training"], "eval_every": 100}}, tmp_path / "at-the-end", once.hooks())
    assert recorder.losses() == once.losses() and len(once.losses()) == 4
    assert recorder.metrics[-1]["eval_loss"] == once.metrics[-1]["eval_loss"]


def test_kept_training_kernels_give_eval_outputs_and_gradients_as_in_training(tmp_path):
    """A 4-bit layer of 64 outputs (a width bitsandbytes' CPU repacking accepts): after an eval pass without
    gradients it still computes the training outputs and passes gradients to its input."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from peft_core.quantization import bitsandbytes_config
    from worker.training.model import keep_training_kernels

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4)).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=bitsandbytes_config("4bit-nf4", compute_dtype=torch.float32), device_map={"": "cpu"}, dtype=torch.float32
    )
    assert keep_training_kernels(model, lambda _line: None) in (0, 7)  # 7 linears; 0 where bitsandbytes never repacks (no AVX512-BF16)
    layer = model.model.layers[0].mlp.gate_proj
    x = torch.randn(3, 64, requires_grad=True)
    trained = layer(x)
    trained.sum().backward()
    grad = x.grad.clone()
    layer.eval()
    with torch.no_grad():
        evaluated = layer(x.detach())
    layer.train()
    x.grad = None
    again = layer(x)
    again.sum().backward()
    assert torch.equal(evaluated, trained.detach()) and torch.equal(again, trained)
    assert x.grad is not None and torch.equal(x.grad, grad)
