"""LoHa: the update is the Hadamard product of two low-rank products (LyCORIS; Hyeon-Woo et al. 2021,
FedPara, https://arxiv.org/abs/2108.06098):

    ΔW = (alpha / r) * (w1_a @ w1_b) ⊙ (w2_a @ w2_b)

Registering imports only the config; the layers (`peft_core.tuners.loha.layer`) load when a model is
adapted. Default targets are LoRA's (peft uses the same table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...default_targets import DEFAULT_TARGETS
from ...patterns import pattern_value
from ...registry import MethodSpec, register_method
from ...types import PeftType
from ..lycoris import LycorisConfig

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape


@dataclass
class LoHaConfig(LycorisConfig):
    """LoHa: a Hadamard product of two rank-r updates (rank up to r² for the parameters of 2r)."""

    peft_type: ClassVar[PeftType] = PeftType.LOHA

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """Two (out x r, r x in*kernel) pairs; with use_effective_conv2d on a k>1 conv, two Tucker cores and (r x out, r x in) pairs."""
        if module.kind not in ("linear", "conv"):
            return None
        r = pattern_value(self.rank_pattern, module.name, self.r)
        out_f, in_f, *kernel = module.weight_shape
        if self.use_effective_conv2d and any(k != 1 for k in kernel):
            return 2 * (r * r * math.prod(kernel) + r * out_f + r * in_f)
        return 2 * (out_f * r + r * in_f * math.prod(kernel))


register_method(
    MethodSpec(
        peft_type=PeftType.LOHA,
        config_cls=LoHaConfig,
        prefix="hada_",
        layers="peft_core.tuners.loha.layer",
        title="LoHa",
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["LoHaConfig"]
