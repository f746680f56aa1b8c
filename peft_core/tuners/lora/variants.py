"""LoRA variants as strategies, one picked per adapter (no `if use_dora` spread through the layer).

A variant decides how the low-rank update enters the forward pass and the weights:

    PlainLora  h = W0 x + s * B A x                                    W' = W0 + s B A
    DoRA       h = m / ||W0 + s B A||_c * (W0 + s B A) x               (Liu et al. 2024, arXiv 2402.09353)
               computed as (g - 1) * W0 x + g * s * B A x with g = m / ||W0 + s B A||_c, the norm
               detached (paper section 4.3). ||.||_c is the per-output norm, floored at `DORA_NORM_EPS`
               so an all-zero weight row gives a zero output instead of NaN (peft issue #2049).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .config import LoraConfig
    from .layer import LoraLayer

DORA_NORM_EPS = 1e-8


class PlainLora:
    def init(self, layer: LoraLayer, name: str) -> None:
        """Plain LoRA needs nothing beyond A and B."""

    def forward(self, layer: LoraLayer, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        x_in = x.to(layer.adapter_dtype(name)) if x.is_floating_point() else x
        update = layer.lora_path(name, layer.dropout(name, x_in)) * layer.scaling[name]
        return result + update.to(result.dtype)

    def merged_weight(self, layer: LoraLayer, name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight + layer.delta_weight(name).to(weight.dtype)

    def unmerged_weight(self, layer: LoraLayer, name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight - layer.delta_weight(name).to(weight.dtype)


class DoRA(PlainLora):
    def _norm(self, layer: LoraLayer, name: str, weight: torch.Tensor) -> torch.Tensor:
        combined = weight + layer.lora_weight(name).detach().to(weight.device, weight.dtype) * layer.scaling[name]
        return layer.column_norm(combined).clamp_min(DORA_NORM_EPS)

    def init(self, layer: LoraLayer, name: str) -> None:
        weight = layer.view.get_weight(torch.float32)
        with torch.no_grad():
            magnitude = self._norm(layer, name, weight.to(layer.adapter_dtype(name)))
        layer.lora_magnitude_vector[name] = nn.Parameter(magnitude.to(layer.adapter_dtype(name)))

    def forward(self, layer: LoraLayer, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        dtype = layer.adapter_dtype(name)
        x_in = x.to(dtype) if x.is_floating_point() else x
        x_drop = layer.dropout(name, x_in)
        weight = layer.view.get_weight(dtype)
        gain = layer.lora_magnitude_vector[name] / self._norm(layer, name, weight).detach()
        gain = layer.per_output(gain, weight_like=False)
        lora_out = layer.lora_path(name, x_drop) * layer.scaling[name]
        if x_drop is x_in:  # no dropout: the base output is already there, minus its bias
            base_out = result.to(dtype)
            bias = layer.view.bias
            if bias is not None:
                base_out = base_out - layer.per_output(bias.detach().to(dtype), weight_like=False)
        else:
            base_out = layer.apply_weight(x_drop, weight)
        return result + ((gain - 1) * base_out + gain * lora_out).to(result.dtype)

    def merged_weight(self, layer: LoraLayer, name: str, weight: torch.Tensor) -> torch.Tensor:
        # One variant object per adapter per layer, so it can keep the norm used here for an exact unmerge.
        self._merge_norm = self._norm(layer, name, weight)
        gain = layer.lora_magnitude_vector[name].detach().to(weight.dtype) / self._merge_norm
        return (weight + layer.delta_weight(name).to(weight.dtype)) * layer.per_output(gain, weight_like=True)

    def unmerged_weight(self, layer: LoraLayer, name: str, merged: torch.Tensor) -> torch.Tensor:
        gain = layer.lora_magnitude_vector[name].detach().to(merged.dtype) / self._merge_norm
        return merged / layer.per_output(gain, weight_like=True) - layer.delta_weight(name).to(merged.dtype)


def variant_for(config: LoraConfig) -> PlainLora:
    return DoRA() if config.use_dora else PlainLora()
