"""Small helpers people use around a PEFT model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn as nn

from .layer import AdapterLayer


def check_if_peft_model(model: nn.Module) -> bool:
    """True if the model carries adapter layers of peft_core."""
    return any(isinstance(m, AdapterLayer) for m in model.modules())


@contextlib.contextmanager
def rescale_adapter_scale(model: nn.Module, multiplier: float) -> Iterator[None]:
    """Temporarily multiply every adapter's scaling by `multiplier` (e.g. 0.5 to soften a LoRA).

    Works for methods whose layers keep a per-adapter `scaling`; restores the exact values on exit,
    also when the block raises.
    """
    if not isinstance(multiplier, (int, float)):
        raise TypeError(f"multiplier must be a number, got {type(multiplier).__name__}")
    layers = [m for m in model.modules() if isinstance(m, AdapterLayer) and isinstance(getattr(m, "scaling", None), dict)]
    if not layers:
        raise ValueError("rescale_adapter_scale: the model has no adapter layers with a scaling (is it a LoRA model?)")
    saved = [(layer, dict(layer.scaling)) for layer in layers]
    try:
        for layer, original in saved:
            for name, value in original.items():
                layer.scaling[name] = value * multiplier
        yield
    finally:
        for layer, original in saved:
            layer.scaling.clear()
            layer.scaling.update(original)
