"""VeRA: frozen random projections shared by every layer, with trained scaling vectors (Kopiczko et al.
2024, https://arxiv.org/abs/2310.11454).

    h = W0 x + Λb B Λd A x,   A: (r, in_max), B: (out_max, r) frozen and shared, sliced to each layer;
                              Λd = diag(vera_lambda_d) (r,), Λb = diag(vera_lambda_b) (out,) trained

A and B come from a CPU generator seeded with `projection_prng_key` (Kaiming-uniform, A first), so a
checkpoint saved without them (`save_projection=False`) regenerates the same ones; with
`save_projection=True` they are saved as `base_model.vera_A` / `base_model.vera_B`, as peft does.

Registering imports only the config; the layers (`peft_core.tuners.vera.layer`) load when a model is adapted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import AdapterConfig, option
from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape

VERA_TARGETS: dict[str, list[str] | str] = {**DEFAULT_TARGETS, "phi": ["q_proj", "v_proj"]}  # peft's VeRA table


@dataclass
class VeraConfig(AdapterConfig):
    """VeRA: train two scaling vectors per layer around frozen random projections shared by all layers."""

    peft_type: ClassVar[PeftType] = PeftType.VERA

    r: int = option(256, help="Rank of the shared random projections (VeRA uses large ranks cheaply).", gt=0)
    projection_prng_key: int = option(0, help="Seed of the shared random projections.", advanced=True)
    save_projection: bool = option(
        True, help="Save the projections with the adapter (false: regenerated from the seed, smaller files).", advanced=True
    )
    vera_dropout: float = option(0.0, help="Dropout on the adapter's input during training.", ge=0.0, le=0.999)
    d_initial: float = option(0.1, help="Starting value of every entry of the lambda_d vector.", advanced=True)
    fan_in_fan_out: bool = option(False, help="Weights stored as (in, out), as in GPT-2's Conv1D (detected automatically).", advanced=True)
    bias: str = option("none", help="Which biases to train: none, all, or vera_only.", choices=("none", "all", "vera_only"), advanced=True)
    init_weights: bool = option(
        True, help="Start as a no-op (lambda_b = 0, lambda_d = d_initial); false draws random vectors (for tests).", advanced=True
    )

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """lambda_b (out) and lambda_d (r); the shared projections are frozen buffers, not trained."""
        return module.out_features + self.r if module.kind == "linear" else None

    def to_dict(self) -> dict[str, Any]:
        """peft's VeraConfig has no exclude_modules: it is written only when set (peft would ignore it)."""
        data = super().to_dict()
        if data.get("exclude_modules") is None:
            data.pop("exclude_modules", None)
        return data


register_method(
    MethodSpec(
        peft_type=PeftType.VERA,
        config_cls=VeraConfig,
        prefix="vera_lambda_",
        layers="peft_core.tuners.vera.layer",
        title="VeRA",
        default_targets=VERA_TARGETS,
    )
)

__all__ = ["VeraConfig"]
