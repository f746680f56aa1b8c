"""What LoHa and LoKr share (the LyCORIS family, https://github.com/KohakuBlueleaf/LyCORIS): the config
fields here, and the layer behaviour in `peft_core.tuners.lycoris.layer` (rank/alpha patterns, scaling
alpha / r, rank and module dropout, the additive forward and merge). This package registers no method.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import AdapterConfig, option
from ...patterns import pattern_problems

INIT_CHOICES = (True, False, "lycoris")


@dataclass
class LycorisConfig(AdapterConfig):
    """Fields every LyCORIS method has (peft's LycorisConfig)."""

    r: int = option(8, help="Rank of the factors: higher learns more and costs more memory.", gt=0)
    alpha: int | float = option(8, help="Scale of the update: scaling = alpha / r.", gt=0)
    rank_dropout: float = option(
        0.0, help="While training, drop each output row of the update with this probability.", ge=0.0, le=1.0
    )
    module_dropout: float = option(
        0.0, help="While training, skip the whole adapter on a step with this probability.", ge=0.0, le=1.0
    )
    use_effective_conv2d: bool = option(
        False, help="Factor convolution kernels through a small core tensor (Tucker form, as in LyCORIS).", advanced=True
    )
    init_weights: bool | str = option(
        True,
        help="Initialisation: true (the update starts at zero), 'lycoris' (zero on the other factor), false (random, for tests).",
        choices=INIT_CHOICES,
        advanced=True,
    )
    rank_pattern: dict[str, int] = option(factory=dict, help="Per-module rank overrides: {regex or name: r}.", advanced=True)
    alpha_pattern: dict[str, int | float] = option(
        factory=dict, help="Per-module alpha overrides: {regex or name: alpha}.", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        problems.extend(pattern_problems(self.rank_pattern, self.alpha_pattern))
        return problems
