"""LoKr: the update is a Kronecker product of two small factors (LyCORIS; Edalati et al. 2022, KronA,
https://arxiv.org/abs/2212.10650; Yeh et al. 2023, https://arxiv.org/abs/2309.14859):

    ΔW = (alpha / r) * kron(w1, w2),  w1: (out_l, in_m),  w2: (out_k, in_n[, *kernel]),
    out = out_l * out_k and in = in_m * in_n split as evenly as `decompose_factor` allows;
    w2 (and with `decompose_both` w1) is itself a rank-r product when r is small enough.

Registering imports only the config; the layers (`peft_core.tuners.lokr.layer`) load when a model is
adapted. Default targets are LoRA's (peft uses the same table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config import option
from ...default_targets import DEFAULT_TARGETS
from ...patterns import pattern_value
from ...registry import MethodSpec, register_method
from ...types import PeftType
from ..lycoris import LycorisConfig

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape


@dataclass
class LoKrConfig(LycorisConfig):
    """LoKr: a Kronecker product of two small factors (very few parameters for a full-rank-capable update)."""

    peft_type: ClassVar[PeftType] = PeftType.LOKR

    decompose_both: bool = option(False, help="Also write the left factor w1 as a rank-r product.", advanced=True)
    decompose_factor: int = option(
        -1, help="Split sizes as (factor, size / factor) when possible; -1 splits as evenly as possible.", advanced=True
    )
    rank_dropout_scale: bool = option(
        False, help="With rank_dropout, rescale the kept rows by the kept fraction.", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if self.decompose_factor == 0:
            problems.append("decompose_factor: must be a positive size or -1 (split as evenly as possible), got 0")
        return problems

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """w1 (out_l x in_m, or r x (out_l + in_m) with decompose_both) plus w2 (full, low-rank or Tucker), as the layer builds them."""
        if module.kind not in ("linear", "conv"):
            return None
        r = pattern_value(self.rank_pattern, module.name, self.r)
        out_f, in_f, *kernel = module.weight_shape
        out_l, out_k = factorize(out_f, self.decompose_factor)
        in_m, in_n = factorize(in_f, self.decompose_factor)
        w1 = r * (out_l + in_m) if self.decompose_both and r < max(out_l, in_m) / 2 else out_l * in_m
        if r >= max(out_k, in_n) / 2:
            w2 = out_k * in_n * math.prod(kernel)
        elif self.use_effective_conv2d and any(k != 1 for k in kernel):
            w2 = r * r * math.prod(kernel) + r * out_k + r * in_n
        else:
            w2 = out_k * r + r * in_n * math.prod(kernel)
        return w1 + w2


def factorize(size: int, factor: int = -1) -> tuple[int, int]:
    """(m, n) with m * n = size, how LoKr splits a weight side into its two Kronecker factors (here, torch-free, so the
    parameter count and the layer share it). A factor that divides the size gives (factor, size // factor); otherwise
    m <= n is the largest divisor up to sqrt(size) (and up to `factor` when it is positive)."""
    if factor > 0 and size % factor == 0:
        return factor, size // factor
    limit = size if factor <= 0 else factor
    m = 1
    for candidate in range(2, math.isqrt(size) + 1):
        if candidate > limit:
            break
        if size % candidate == 0:
            m = candidate
    return m, size // m


register_method(
    MethodSpec(
        peft_type=PeftType.LOKR,
        config_cls=LoKrConfig,
        prefix="lokr_",
        layers="peft_core.tuners.lokr.layer",
        title="LoKr",
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["LoKrConfig"]
