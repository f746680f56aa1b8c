"""IA3 layers: one learned vector `ia3_l` per adapter that scales the layer's output or input.

    output targets   y = base(x) * l            ia3_l: (out, 1) linear, (1, out, 1, ...) conv
    feed-forward     y = base(x * l)            ia3_l: (1, in) linear,  (1, in, 1, ...) conv

(the stored shapes are peft's, so checkpoints match). Merging scales the weight (and, for output
targets, the bias) by l; unmerging divides it back out. Several active adapters multiply. The maths
only touches the base layer through its view, so bitsandbytes layers work unchanged (merging them
re-quantizes, where peft refuses).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ...layer import AdapterLayer
from ...targeting import name_matches
from . import IA3Config


class IA3Layer(AdapterLayer):
    """IA3 on a linear or convolutional base layer (weight (out, in) or (out, in, *kernel))."""

    adapter_params = ("ia3_l",)
    adapter_settings = ("is_feedforward",)

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.ia3_l = nn.ParameterDict()

    def create_adapter(self, adapter_name: str, config: IA3Config, target_name: str = "", **_: Any) -> None:
        feedforward = config.feedforward_modules is not None and name_matches(target_name, config.feedforward_modules)
        self.is_feedforward[adapter_name] = feedforward
        size = self.view.in_features if feedforward else self.view.out_features
        ndim = len(self.view.weight_shape)
        if ndim == 2:
            shape = (1, size) if feedforward else (size, 1)
        else:
            shape = (1, size, *[1] * (ndim - 2))
        init = torch.ones if config.init_ia3_weights else torch.randn
        self.ia3_l[adapter_name] = nn.Parameter(init(shape))

    # the vector laid out to broadcast against activations and weights -----------------------------
    def _activation_scale(self, adapter_name: str) -> torch.Tensor:
        """l shaped for (..., C) linear activations or (N, C, *S) conv activations."""
        return self.ia3_l[adapter_name].reshape(-1, *[1] * (len(self.view.weight_shape) - 2))

    def _weight_scale(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        """l shaped to scale the weight's output rows, or its input columns for feed-forward targets."""
        vector = self.ia3_l[adapter_name].detach().to(weight.dtype)
        if self.is_feedforward[adapter_name]:
            return vector.reshape(1, -1, *[1] * (weight.dim() - 2))
        return vector.reshape(-1, *[1] * (weight.dim() - 1))

    # forward --------------------------------------------------------------------------------------
    def adapter_input(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        if not self.is_feedforward[adapter_name]:
            return x
        scale = self._activation_scale(adapter_name)
        return (x.to(scale.dtype) * scale).to(x.dtype)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.is_feedforward[adapter_name]:
            return result
        scale = self._activation_scale(adapter_name)
        return (result.to(scale.dtype) * scale).to(result.dtype)

    # merge ----------------------------------------------------------------------------------------
    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight * self._weight_scale(adapter_name, weight)

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        scale = self._weight_scale(adapter_name, weight)
        return weight / torch.where(scale == 0, torch.ones_like(scale), scale)  # a zeroed row stays zero

    def merged_bias(self, adapter_name: str, bias: torch.Tensor | None) -> torch.Tensor | None:
        if bias is None or self.is_feedforward[adapter_name]:
            return None
        return bias * self.ia3_l[adapter_name].detach().flatten().to(bias.dtype)

    def unmerged_bias(self, adapter_name: str, bias: torch.Tensor | None) -> torch.Tensor | None:
        if bias is None or self.is_feedforward[adapter_name]:
            return None
        scale = self.ia3_l[adapter_name].detach().flatten().to(bias.dtype)
        return bias / torch.where(scale == 0, torch.ones_like(scale), scale)


LAYER_CLASSES = {"linear": IA3Layer, "conv": IA3Layer}

from .combine import add_weighted_adapter  # noqa: E402, F401  (model-level extension, found by TunerModel)
