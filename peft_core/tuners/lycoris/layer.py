"""The shared half of the LyCORIS layers (LoHa, LoKr): an additive update ΔW built from small factors.

    y = base(x) + op(x, scaling * ΔW),   scaling = alpha / r,   op = the base layer's own operation
                                         (linear, or conv with its stride/padding/groups) via its view

A subclass declares its factor containers and implements `create_tensors` (shapes), `update` (ΔW in the
base weight's canonical layout, unscaled) and `zero_factor` (which factor starts at zero). While
training, `module_dropout` skips the adapter on a step and `rank_dropout` drops output rows of ΔW
(rescaled by the kept fraction where the method does so); the random draws follow peft's order, so
seeded runs match it. Merging adds scaling * ΔW through the view, so quantized bases work too.

`use_effective_conv2d` writes a convolution's update in Tucker form: a core t (r, r, *kernel) between
w_a (r, out) and w_b (r, in). Like peft, a Conv1d kernel is treated as (k, 1) there.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ...layer import AdapterLayer
from ...patterns import pattern_value
from . import LycorisConfig


def tucker(core: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """Rebuild a conv update (out, in, *kernel) from core (r, r, *kernel), w_a (r, out), w_b (r, in)."""
    return torch.einsum("ij...,jr,ip->pr...", core, w_b, w_a)


class LycorisLayer(AdapterLayer):
    adapter_settings = ("r", "alpha", "scaling", "rank_dropout", "module_dropout", "rescale_rank_dropout")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        for name in self.adapter_params:
            setattr(self, name, nn.ParameterDict())

    # tuner-specific pieces ------------------------------------------------------------------------
    def create_tensors(self, adapter_name: str, r: int, effective_conv: bool, config: LycorisConfig) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement create_tensors")

    def update(self, adapter_name: str) -> torch.Tensor:
        """ΔW without scaling, shaped like the base weight (canonical layout)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update")

    def zero_factor(self, adapter_name: str, init: bool | str) -> str:
        """The container whose tensor starts at zero for `init` True or 'lycoris' (so ΔW starts at 0)."""
        raise NotImplementedError(f"{type(self).__name__} must implement zero_factor")

    def rescales_rank_dropout(self, config: LycorisConfig) -> bool:
        return True

    # shapes ---------------------------------------------------------------------------------------
    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.view.weight_shape[2:])

    @property
    def core_kernel(self) -> tuple[int, ...]:
        """Kernel of the Tucker core: peft builds a Conv1d's core as (k, 1)."""
        return self.kernel + (1,) if len(self.kernel) == 1 else self.kernel

    # lifecycle ------------------------------------------------------------------------------------
    def create_adapter(self, adapter_name: str, config: LycorisConfig, target_name: str = "", **_: Any) -> None:
        r = pattern_value(config.rank_pattern, target_name, config.r)
        alpha = pattern_value(config.alpha_pattern, target_name, config.alpha)
        self.r[adapter_name] = r
        self.alpha[adapter_name] = alpha
        self.scaling[adapter_name] = alpha / r
        self.rank_dropout[adapter_name] = config.rank_dropout
        self.module_dropout[adapter_name] = config.module_dropout
        self.rescale_rank_dropout[adapter_name] = self.rescales_rank_dropout(config)
        effective_conv = config.use_effective_conv2d and any(k != 1 for k in self.kernel)
        self.create_tensors(adapter_name, r, effective_conv, config)
        for p in self.adapter_parameters(adapter_name).values():
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        if config.init_weights is not False:
            nn.init.zeros_(getattr(self, self.zero_factor(adapter_name, config.init_weights))[adapter_name])

    def new_factor(self, container: str, adapter_name: str, *shape: int) -> None:
        getattr(self, container)[adapter_name] = nn.Parameter(torch.empty(shape))

    # maths ----------------------------------------------------------------------------------------
    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        return self.update(adapter_name) * self.scaling[adapter_name]

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.training and torch.rand(1).item() < self.module_dropout[adapter_name]:
            return result  # module dropout: skip the adapter on this step
        delta = self.delta_weight(adapter_name)
        if self.training and self.rank_dropout[adapter_name] > 0:
            keep = (torch.rand(delta.shape[0]) > self.rank_dropout[adapter_name]).to(delta)
            if self.rescale_rank_dropout[adapter_name]:
                keep = keep / keep.mean().clamp_min(1e-12)  # all rows dropped: zero update, not NaN
            delta = delta * keep.view(-1, *[1] * (delta.dim() - 1))
        update = self.view.apply_weight(x.to(delta.dtype), delta)
        return result + update.to(result.dtype)
