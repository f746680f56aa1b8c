"""worker.training.precision: which precision on which machine, and what an out-of-memory error says."""

from __future__ import annotations

import pytest
import torch

from app.jobspec import TrainingSettings
from worker.training.errors import TrainingError
from worker.training.precision import choose_precision, out_of_memory_as_training_error


def test_auto_is_bf16_on_a_capable_gpu_and_fp32_elsewhere():
    assert choose_precision("auto", cuda=True, bf16_supported=True).name == "bf16"
    assert choose_precision("auto", cuda=True, bf16_supported=False).name == "fp32"
    cpu = choose_precision("auto", cuda=False)
    assert (cpu.name, cpu.device.type, cpu.weights_dtype, cpu.autocast_dtype) == ("fp32", "cpu", torch.float32, None)


def test_half_precision_needs_a_gpu():
    for requested in ("bf16", "fp16"):
        with pytest.raises(TrainingError, match="needs an NVIDIA GPU") as info:
            choose_precision(requested, cuda=False)
        assert "auto" in info.value.hint
    with pytest.raises(TrainingError, match="bfloat16"):
        choose_precision("bf16", cuda=True, bf16_supported=False)


def test_fp16_uses_a_grad_scaler_and_bf16_does_not():
    fp16 = choose_precision("fp16", cuda=True, bf16_supported=False)
    bf16 = choose_precision("bf16", cuda=True, bf16_supported=True)
    assert (fp16.weights_dtype, fp16.grad_scaler) == (torch.float16, True)
    assert (bf16.weights_dtype, bf16.autocast_dtype, bf16.grad_scaler) == (torch.bfloat16, torch.bfloat16, False)


def test_out_of_memory_says_what_to_lower():
    settings = TrainingSettings(batch_size=16, max_seq_length=2048)
    with pytest.raises(TrainingError, match="Out of GPU memory while training") as info:
        with out_of_memory_as_training_error(settings, "while training"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    hint = info.value.hint
    assert "batch_size (now 16)" in hint and "max_seq_length (now 2048)" in hint and "gradient_checkpointing" in hint
    with pytest.raises(TrainingError, match="Out of memory"):
        with out_of_memory_as_training_error(settings, "while training"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(RuntimeError, match="something else"):
        with out_of_memory_as_training_error(settings, "while training"):
            raise RuntimeError("something else")
