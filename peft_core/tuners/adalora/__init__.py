"""AdaLoRA: LoRA in SVD form whose rank budget moves to the layers that matter (Zhang et al. 2023,
https://openreview.net/forum?id=lq62uWRJjiY).

    h = W0 x + (scaling / ranknum) * P (Λ ⊙ Q) x,   P = lora_B (out, r), Λ = lora_E (r, 1), Q = lora_A (r, in)

Training adds an orthogonality penalty on P and Q to the loss and calls `update_and_allocate(step)` after
each optimizer step: importance scores (sensitivity × uncertainty, smoothed) pick which singular values
stay, and a cubic schedule shrinks the total budget from init_r to target_r per layer between `tinit`
and `total_step - tfinal`. The kept values end up in `rank_pattern` (saved in adapter_config.json, with
the saved tensors sliced to match), exactly as peft 0.21.2 stores them.

Registering imports only the config; the layers (`peft_core.tuners.adalora.layer`) load when a model is adapted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config import AdapterConfig, option
from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType
from ..lora.config import LoraConfig

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape

# peft's AdaLoRA table differs from LoRA's on these model types (all attention and feed-forward layers).
ADALORA_TARGETS: dict[str, list[str] | str] = {
    **DEFAULT_TARGETS,
    "t5": ["q", "k", "v", "o", "wi", "wo"],
    "mt5": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "roberta": ["query", "key", "value", "dense"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
}


@dataclass
class AdaLoraConfig(LoraConfig):
    """AdaLoRA: LoRA in SVD form with a rank budget reallocated by importance during training."""

    peft_type: ClassVar[PeftType] = PeftType.ADALORA

    lora_alpha: int | float = option(8, help="Scale of the update: lora_alpha / init_r (0 means the rank itself).", ge=0)
    target_r: int = option(8, help="Average rank per layer left at the end of the budget schedule.", gt=0)
    init_r: int = option(12, help="Rank every layer starts with (the budget shrinks from here).", gt=0)
    tinit: int = option(0, help="Warm-up steps before the rank budget starts shrinking.", ge=0, advanced=True)
    tfinal: int = option(0, help="Final steps trained at the target budget, ranks fixed.", ge=0, advanced=True)
    deltaT: int = option(1, help="Steps between two budget allocations.", gt=0, advanced=True)
    beta1: float = option(0.85, help="Smoothing of the importance (sensitivity) moving average; 0 < beta1 < 1.", gt=0.0, advanced=True)
    beta2: float = option(0.85, help="Smoothing of the uncertainty moving average; 0 < beta2 < 1.", gt=0.0, advanced=True)
    orth_reg_weight: float = option(0.5, help="Weight of the orthogonality penalty on the singular vectors, added to the loss.", ge=0.0, advanced=True)
    total_step: int | None = option(
        None,
        help="Training steps the budget schedule spans; the studio fills it from the training plan when left empty.",
        gt=0,
    )
    rank_pattern: dict[str, list[bool]] | None = option(  # type: ignore[assignment]
        None, help="Singular values kept per layer after allocation (written by training; leave empty).", advanced=True
    )

    def extra_checks(self) -> list[str]:
        # LoRA's own checks read rank_pattern as {name: rank}; AdaLoRA reuses the name for its masks.
        problems = AdapterConfig.extra_checks(self)
        problems += self._token_problems() + self._parameter_problems()
        if self.use_dora:
            problems.append("use_dora: AdaLoRA does not support DoRA; set use_dora=False")
        if self.loftq_config or self.init_lora_weights == "loftq":
            problems.append("loftq_config: AdaLoRA does not support LoftQ initialisation; remove it")
        if self.init_lora_weights not in (True, False):
            problems.append(f"init_lora_weights: AdaLoRA initialises with true (Λ=0, small P and Q) or false (random), got {self.init_lora_weights!r}")
        if self.target_parameters:
            problems.append("target_parameters: AdaLoRA adapts modules only; use target_modules")
        if self.alpha_pattern:
            problems.append("alpha_pattern: not used by AdaLoRA (every layer uses lora_alpha); remove it")
        if self.trainable_token_indices is not None:
            problems.append("trainable_token_indices: not available with AdaLoRA; use LoRA or the TRAINABLE_TOKENS method")
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not 0 < beta < 1:
                problems.append(f"{name}: must be strictly between 0 and 1, got {beta!r}")
        if self.target_r > self.init_r:
            problems.append(f"target_r: {self.target_r} is above init_r={self.init_r}; the budget only shrinks, so set target_r <= init_r")
        if self.total_step is not None and self.tinit >= self.total_step - self.tfinal:
            problems.append(
                f"tinit: with total_step={self.total_step}, tinit={self.tinit} and tfinal={self.tfinal} there is no step left to "
                "reallocate ranks; lower tinit or tfinal, or raise total_step"
            )
        if self.lora_bias:
            problems.append("lora_bias: AdaLoRA has no bias on its update; set lora_bias=False")
        if isinstance(self.rank_pattern, dict):
            problems.extend(f"rank_pattern[{k!r}]: expected a list of true/false per singular value" for k, v in self.rank_pattern.items() if not v)
        return problems

    # ------------------------------------------------------------------ trainable-parameter count (torch-free)

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """Per targeted module: P, Λ, Q at init_r (or the ranks rank_pattern keeps); LoRA's token rows do not apply."""
        return AdapterConfig.trainable_parameter_count(self, shape)

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """Q: r x (in x kernel), Λ: r, P: out x r."""
        if module.kind == "linear":
            fan_in = module.in_features
        elif module.kind == "conv" and module.groups == 1:
            fan_in = module.in_features * module.kernel_numel
        else:
            return None
        kept = (self.rank_pattern or {}).get(f"{module.name}.lora_E")
        r = self.init_r if kept is None else sum(bool(v) for v in kept)
        return r * (fan_in + 1 + module.out_features)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r != 8:
            warnings.warn("AdaLoraConfig: r is not used by AdaLoRA; set init_r (start) and target_r (end) instead", stacklevel=3)


register_method(
    MethodSpec(
        peft_type=PeftType.ADALORA,
        config_cls=AdaLoraConfig,
        prefix="lora_",
        layers="peft_core.tuners.adalora.layer",
        title="AdaLoRA",
        default_targets=ADALORA_TARGETS,
    )
)

__all__ = ["AdaLoraConfig"]
