"""BOFT: orthogonal fine-tuning whose rotation is a product of butterfly factors (Liu et al. 2024,
"Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization", https://arxiv.org/abs/2311.06243).

    W' = diag(s) W B,   B = B_1 ... B_m,   B_i = P_i^T diag(R_i1, ..., R_ik) P_i,   R = Cayley(skew)

with m = boft_n_butterfly_factor block-diagonal factors whose permutations P_i mix ever wider groups of
inputs, and a learned per-output scale s. Registering imports only the config; the layers
(`peft_core.tuners.boft.layer`) load when a model is adapted. Default targets are LoRA's (as in peft).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config import AdapterConfig, option
from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape


@dataclass
class BOFTConfig(AdapterConfig):
    """BOFT: orthogonal fine-tuning with a butterfly-factorised rotation and a learned output scale."""

    peft_type: ClassVar[PeftType] = PeftType.BOFT

    boft_block_size: int = option(
        4, help="Size of each orthogonal block (set this or boft_block_num, the other 0); must divide the layer's input.", ge=0
    )
    boft_block_num: int = option(0, help="Number of blocks per layer (set this or boft_block_size, the other 0).", ge=0)
    boft_n_butterfly_factor: int = option(
        1, help="Number of butterfly factors: 1 is block-diagonal OFT, more mixes wider groups of inputs.", ge=0
    )
    boft_dropout: float = option(
        0.0, help="While training, replace this fraction of the blocks by the identity on each step.", ge=0.0, le=1.0
    )
    bias: str = option("none", help="Which biases to train: none, all, or boft_only.", choices=("none", "all", "boft_only"), advanced=True)
    fan_in_fan_out: bool = option(
        False, help="Weights stored as (in, out), as in GPT-2's Conv1D (detected automatically).", advanced=True
    )
    init_weights: bool = option(
        True, help="Start at the identity rotation and unit scale; false draws them at random (tests).", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if self.boft_block_size and self.boft_block_num:
            problems.append(
                f"boft_block_size: set either boft_block_size ({self.boft_block_size}) or boft_block_num "
                f"({self.boft_block_num}) and the other to 0 (their product is the layer's input size)"
            )
        elif not self.boft_block_size and not self.boft_block_num:
            problems.append("boft_block_size: set boft_block_size or boft_block_num to a positive number (both are 0)")
        return problems

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """boft_R: factors x blocks x b x b, boft_s: one scale per output; None where the layer would refuse the sizes."""
        if module.kind not in ("linear", "conv"):
            return None
        n = math.prod(module.weight_shape[1:])
        given = self.boft_block_num or self.boft_block_size
        if n % given:
            return None
        size, count = (n // given, given) if self.boft_block_num else (given, n // given)
        factors = max(self.boft_n_butterfly_factor, 1)
        if factors > 1 and (size % 2 or count % 2 ** (factors - 1)):
            return None
        return factors * count * size * size + module.out_features


register_method(
    MethodSpec(
        peft_type=PeftType.BOFT,
        config_cls=BOFTConfig,
        prefix="boft_",
        layers="peft_core.tuners.boft.layer",
        title="BOFT",
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["BOFTConfig"]
