"""LoHa: the update is the Hadamard product of two low-rank products (LyCORIS; Hyeon-Woo et al. 2021,
FedPara, https://arxiv.org/abs/2108.06098):

    ΔW = (alpha / r) * (w1_a @ w1_b) ⊙ (w2_a @ w2_b)

Registering imports only the config; the layers (`peft_core.tuners.loha.layer`) load when a model is
adapted. Default targets are LoRA's (peft uses the same table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType
from ..lycoris import LycorisConfig


@dataclass
class LoHaConfig(LycorisConfig):
    """LoHa: a Hadamard product of two rank-r updates (rank up to r² for the parameters of 2r)."""

    peft_type: ClassVar[PeftType] = PeftType.LOHA


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
