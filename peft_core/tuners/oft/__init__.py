"""OFT: multiply each targeted weight by a learned block-diagonal orthogonal matrix (Qiu et al. 2023,
"Controlling Text-to-Image Diffusion by Orthogonal Finetuning", https://arxiv.org/abs/2306.07280;
Cayley-Neumann parametrisation from Qiu et al. 2025, https://arxiv.org/abs/2506.19847).

    W' = W R,   R = diag(R_1, ..., R_k) acting on the (flattened) input dimension,
    R_i = Cayley(Q_i) = (I + Q_i)(I - Q_i)^-1 with Q_i skew-symmetric (b x b, b = oft_block_size)

Registering imports only the config; the layers (`peft_core.tuners.oft.layer`) load when a model is
adapted. Default targets are LoRA's (peft uses the same table).
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
class OFTConfig(AdapterConfig):
    """OFT: rotate each targeted weight by a learned block-diagonal orthogonal matrix (norm-preserving)."""

    peft_type: ClassVar[PeftType] = PeftType.OFT

    r: int = option(0, help="Number of orthogonal blocks per layer (set this or oft_block_size, the other 0).", ge=0)
    oft_block_size: int = option(
        32, help="Size of each orthogonal block (set this or r, the other 0); adjusted to divide the layer's input.", ge=0
    )
    module_dropout: float = option(
        0.0, help="While training, replace this fraction of the blocks by the identity on each step.", ge=0.0, le=1.0
    )
    coft: bool = option(False, help="Constrained OFT: keep each rotation within eps of the identity.", advanced=True)
    eps: float = option(6e-5, help="Radius of the COFT constraint.", gt=0.0, advanced=True)
    block_share: bool = option(False, help="Share one block's parameters across all blocks of a layer.", advanced=True)
    use_cayley_neumann: bool = option(
        True, help="Approximate the Cayley transform's inverse by a Neumann series (faster, no matrix solve).", advanced=True
    )
    num_cayley_neumann_terms: int = option(5, help="Terms of the Neumann series.", ge=0, advanced=True)
    bias: str = option("none", help="Which biases to train: none, all, or oft_only.", choices=("none", "all", "oft_only"), advanced=True)
    fan_in_fan_out: bool = option(
        False, help="Weights stored as (in, out), as in GPT-2's Conv1D (detected automatically).", advanced=True
    )
    init_weights: bool = option(True, help="Start every rotation at the identity; false draws them at random (tests).", advanced=True)

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if self.r and self.oft_block_size:
            problems.append(
                f"r: set either r ({self.r}) or oft_block_size ({self.oft_block_size}) and the other to 0 "
                "(r x oft_block_size is the layer's input size)"
            )
        elif not self.r and not self.oft_block_size:
            problems.append("oft_block_size: set r or oft_block_size to a positive number (both are 0)")
        return problems

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """k blocks (1 with block_share) of b(b-1)/2 skew entries; b divides the flattened input as the layer adjusts it."""
        if module.kind not in ("linear", "conv"):
            return None
        n = math.prod(module.weight_shape[1:])
        size = n // nearest_divisor(n, self.r) if self.r else nearest_divisor(n, self.oft_block_size)
        return (1 if self.block_share else n // size) * (size * (size - 1) // 2)


def nearest_divisor(n: int, target: int) -> int:
    """The divisor of n closest to target, the smaller on a tie: how OFT moves an r or block size that does not divide
    the input (here, torch-free, so the parameter count and the layer share it)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), d))


register_method(
    MethodSpec(
        peft_type=PeftType.OFT,
        config_cls=OFTConfig,
        prefix="oft_",
        layers="peft_core.tuners.oft.layer",
        title="OFT",
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["OFTConfig"]
