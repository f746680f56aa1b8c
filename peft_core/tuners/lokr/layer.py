"""LoKr layers (see peft_core.tuners.lycoris.layer for the shared forward, dropout and merge).

    lokr_w1 (out_l, in_m)              or lokr_w1_a (out_l, r), lokr_w1_b (r, in_m)    with decompose_both
    lokr_w2 (out_k, in_n, *kernel)     or lokr_w2_a (out_k, r), lokr_w2_b (r, in_n * prod(kernel))
                                       or lokr_t2 (r, r, *kernel), lokr_w2_a (r, out_k), lokr_w2_b (r, in_n)
    ΔW = kron(w1, w2).reshape(weight shape)

A factor is written as a rank-r product only when r < max(its sides) / 2, as peft does. At init w1
(or w1_a) is zero; with init_weights='lycoris' w2 (or w2_b) is zero instead.
"""

from __future__ import annotations

import math

import torch

from ..lycoris.layer import LycorisLayer, tucker
from . import LoKrConfig, factorize


class LoKrLayer(LycorisLayer):
    adapter_params = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")

    def create_tensors(self, adapter_name: str, r: int, effective_conv: bool, config: LoKrConfig) -> None:
        out_f, in_f, *kernel = self.view.weight_shape
        out_l, out_k = factorize(out_f, config.decompose_factor)
        in_m, in_n = factorize(in_f, config.decompose_factor)
        if config.decompose_both and r < max(out_l, in_m) / 2:
            self.new_factor("lokr_w1_a", adapter_name, out_l, r)
            self.new_factor("lokr_w1_b", adapter_name, r, in_m)
        else:
            self.new_factor("lokr_w1", adapter_name, out_l, in_m)
        if r >= max(out_k, in_n) / 2:
            self.new_factor("lokr_w2", adapter_name, out_k, in_n, *kernel)
        elif effective_conv:
            self.new_factor("lokr_t2", adapter_name, r, r, *self.core_kernel)
            self.new_factor("lokr_w2_a", adapter_name, r, out_k)
            self.new_factor("lokr_w2_b", adapter_name, r, in_n)
        else:
            self.new_factor("lokr_w2_a", adapter_name, out_k, r)
            self.new_factor("lokr_w2_b", adapter_name, r, in_n * math.prod(kernel))

    def zero_factor(self, adapter_name: str, init: bool | str) -> str:
        if init == "lycoris":
            return "lokr_w2" if adapter_name in self.lokr_w2 else "lokr_w2_b"
        return "lokr_w1" if adapter_name in self.lokr_w1 else "lokr_w1_a"

    def rescales_rank_dropout(self, config: LoKrConfig) -> bool:
        return config.rank_dropout_scale

    def update(self, adapter_name: str) -> torch.Tensor:
        n = adapter_name
        w1 = self.lokr_w1[n] if n in self.lokr_w1 else self.lokr_w1_a[n] @ self.lokr_w1_b[n]
        if n in self.lokr_w2:
            w2 = self.lokr_w2[n]
        elif n in self.lokr_t2:
            w2 = tucker(self.lokr_t2[n], self.lokr_w2_a[n], self.lokr_w2_b[n])
        else:
            w2 = self.lokr_w2_a[n] @ self.lokr_w2_b[n]
        if w2.dim() > 3:  # lift w1 over the kernel dims; peft leaves a Conv1d's 3-D w2 unlifted, and so do we
            w1 = w1.reshape(*w1.shape, *[1] * (w2.dim() - 2))
        return torch.kron(w1, w2.contiguous()).reshape(self.view.weight_shape)


LAYER_CLASSES = {"linear": LoKrLayer, "conv": LoKrLayer}
