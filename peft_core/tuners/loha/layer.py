"""LoHa layers (see peft_core.tuners.lycoris.layer for the shared forward, dropout and merge).

    linear / conv     hada_w1_a, hada_w2_a: (out, r)    hada_w1_b, hada_w2_b: (r, in * prod(kernel))
                      ΔW = ((w1_a @ w1_b) ⊙ (w2_a @ w2_b)).reshape(weight shape)
    effective conv    hada_t1, hada_t2: (r, r, *kernel)  hada_w*_a: (r, out)  hada_w*_b: (r, in)
                      ΔW = tucker(t1, w1_a, w1_b) ⊙ tucker(t2, w2_a, w2_b)

At init hada_w2_b is zero, so ΔW starts at zero.
"""

from __future__ import annotations

import math

import torch

from ..lycoris import LycorisConfig
from ..lycoris.layer import LycorisLayer, tucker


class LoHaLayer(LycorisLayer):
    adapter_params = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")

    def create_tensors(self, adapter_name: str, r: int, effective_conv: bool, config: LycorisConfig) -> None:
        out_f, in_f, *kernel = self.view.weight_shape
        if effective_conv:
            for i in (1, 2):
                self.new_factor(f"hada_t{i}", adapter_name, r, r, *self.core_kernel)
                self.new_factor(f"hada_w{i}_a", adapter_name, r, out_f)
                self.new_factor(f"hada_w{i}_b", adapter_name, r, in_f)
        else:
            for i in (1, 2):
                self.new_factor(f"hada_w{i}_a", adapter_name, out_f, r)
                self.new_factor(f"hada_w{i}_b", adapter_name, r, in_f * math.prod(kernel))

    def zero_factor(self, adapter_name: str, init: bool | str) -> str:
        return "hada_w2_b"

    def update(self, adapter_name: str) -> torch.Tensor:
        n = adapter_name
        if n in self.hada_t1:
            first = tucker(self.hada_t1[n], self.hada_w1_a[n], self.hada_w1_b[n])
            second = tucker(self.hada_t2[n], self.hada_w2_a[n], self.hada_w2_b[n])
        else:
            first = self.hada_w1_a[n] @ self.hada_w1_b[n]
            second = self.hada_w2_a[n] @ self.hada_w2_b[n]
        return (first * second).reshape(self.view.weight_shape)


LAYER_CLASSES = {"linear": LoHaLayer, "conv": LoHaLayer}
