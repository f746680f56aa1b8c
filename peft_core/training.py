"""Helpers for training on quantized (k-bit) base models."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .base_layers import view_for


def is_quantized_model(model: nn.Module) -> bool:
    """True if any layer of the model is a quantized layer the engine knows (bitsandbytes, ...)."""
    for module in model.modules():
        view = view_for(module)
        if view is not None and view.quantized:
            return True
    return False


def prepare_model_for_kbit_training(
    model: nn.Module,
    use_gradient_checkpointing: bool = True,
    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Get a quantized model ready for adapter training.

    Freezes every parameter, upcasts the non-quantized half-precision ones (norms, embeddings, head)
    to float32 for stable training, and, with gradient checkpointing, makes the input embeddings
    produce gradients so checkpointed blocks still backpropagate into the adapters.
    """
    quantized = is_quantized_model(model)
    for param in model.parameters():
        param.requires_grad_(False)
    if quantized:
        for param in model.parameters():
            if param.dtype in (torch.float16, torch.bfloat16) and param.__class__ is nn.Parameter:
                param.data = param.data.to(torch.float32)
    if use_gradient_checkpointing:
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        if hasattr(model, "gradient_checkpointing_enable"):
            kwargs = {"use_reentrant": True} if gradient_checkpointing_kwargs is None else dict(gradient_checkpointing_kwargs)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model
