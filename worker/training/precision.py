"""Device and numeric precision: what the base weights are stored in and what the forward runs in.

    auto  bf16 on a CUDA GPU that supports it, else fp32 (a CPU, or an older GPU)
    fp32  everything in float32, anywhere
    bf16  base weights in bfloat16, forward under bf16 autocast; needs a CUDA GPU with bf16 (Ampere+)
    fp16  base weights in float16, forward under fp16 autocast with a GradScaler; needs a CUDA GPU

The trainable (adapter) parameters always stay float32 so that AdamW's small updates are not rounded
away. Half precision on a CPU is refused rather than emulated: it would be slower than fp32 there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import TrainingError


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device: torch.device
    weights_dtype: torch.dtype  # what the frozen base weights are loaded in
    autocast_dtype: torch.dtype | None  # None: no autocast
    grad_scaler: bool  # fp16 only: scale the loss so small gradients do not underflow

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def choose_precision(requested: str, *, cuda: bool | None = None, bf16_supported: bool | None = None) -> Precision:
    """The precision for a `training.precision` setting on this machine (arguments override detection, for tests)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if bf16_supported is None:
        bf16_supported = cuda and torch.cuda.is_bf16_supported()
    device = torch.device("cuda" if cuda else "cpu")
    if requested == "auto":
        requested = "bf16" if bf16_supported else "fp32"
    if requested == "fp32":
        return Precision("fp32", device, torch.float32, None, False)
    if not cuda:
        raise TrainingError(
            f"training.precision={requested!r} needs an NVIDIA GPU, and this worker has none.",
            hint="Choose precision 'auto' or 'fp32' (auto picks the best the machine supports).",
        )
    if requested == "bf16":
        if not bf16_supported:
            raise TrainingError(
                "training.precision='bf16' needs a GPU with bfloat16 support (Ampere or newer); this one has none.",
                hint="Choose 'fp16' (with loss scaling) or 'auto'.",
            )
        return Precision("bf16", device, torch.bfloat16, torch.bfloat16, False)
    if requested == "fp16":
        return Precision("fp16", device, torch.float16, torch.float16, True)
    raise TrainingError(f"training.precision={requested!r} is not known.", hint="Use auto, fp32, bf16 or fp16.")


@contextlib.contextmanager
def out_of_memory_as_training_error(settings: object, where: str) -> Iterator[None]:
    """Turn an out-of-memory error into a TrainingError that says which settings to lower."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainingError(f"Out of GPU memory {where}.", hint=_memory_hint(settings)) from exc
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower() and "can't allocate memory" not in str(exc).lower():
            raise
        raise TrainingError(f"Out of memory {where}: {str(exc).splitlines()[0]}", hint=_memory_hint(settings)) from exc


def _memory_hint(settings: object) -> str:
    batch = getattr(settings, "batch_size", "?")
    length = getattr(settings, "max_seq_length", "?")
    checkpointing = getattr(settings, "gradient_checkpointing", False)
    tips = [
        f"lower training.batch_size (now {batch}) and raise gradient_accumulation_steps to keep the effective batch",
        f"lower training.max_seq_length (now {length})",
    ]
    if not checkpointing:
        tips.append("turn on training.gradient_checkpointing")
    tips.append("or pick a smaller base model or a lower adapter rank")
    return "; ".join(tips) + "."
