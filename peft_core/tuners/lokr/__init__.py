"""LoKr: the update is a Kronecker product of two small factors (LyCORIS; Edalati et al. 2022, KronA,
https://arxiv.org/abs/2212.10650; Yeh et al. 2023, https://arxiv.org/abs/2309.14859):

    ΔW = (alpha / r) * kron(w1, w2),  w1: (out_l, in_m),  w2: (out_k, in_n[, *kernel]),
    out = out_l * out_k and in = in_m * in_n split as evenly as `decompose_factor` allows;
    w2 (and with `decompose_both` w1) is itself a rank-r product when r is small enough.

Registering imports only the config; the layers (`peft_core.tuners.lokr.layer`) load when a model is
adapted. Default targets are LoRA's (peft uses the same table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import option
from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType
from ..lycoris import LycorisConfig


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
