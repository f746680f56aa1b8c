"""IA3: learned vectors that rescale activations (Liu et al. 2022, https://arxiv.org/abs/2205.05638).

    y = (W x + b) * l      most targets scale their output (bias included), l: (out,)
    y = W (x * l) + b      targets listed in `feedforward_modules` scale their input, l: (in,)

Registering imports only the config; the layers (`peft_core.tuners.ia3.layer`) load when a model is
adapted. The default targets per model type are what peft 0.21.2 picks on the same architectures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config import TargetingConfig, option
from ...matching import name_matches
from ...registry import MethodSpec, register_method
from ...types import PeftType

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape


@dataclass
class IA3Config(TargetingConfig):
    """IA3: learn one scaling vector per targeted layer (output side, or input side for feed-forward layers)."""

    peft_type: ClassVar[PeftType] = PeftType.IA3

    feedforward_modules: list[str] | str | None = option(
        None,
        help="Targets whose input is scaled (the feed-forward layers; a subset of target_modules); "
        "the others scale their output. Defaults per model type; [] for none.",
    )
    fan_in_fan_out: bool = option(
        False, help="Weights stored as (in, out), as in GPT-2's Conv1D (detected automatically).", advanced=True
    )
    init_ia3_weights: bool = option(
        True, help="Start every vector at 1 (the adapter starts as a no-op); false draws them at random.", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        ff, targets = self.feedforward_modules, self.target_modules
        if isinstance(ff, list) and isinstance(targets, list):
            # an entry may also be a suffix of the targets: peft saves resolved targets as full module names
            extra = [f for f in ff if not any(t == f or t.endswith("." + f) for t in targets)]
            if extra:
                problems.append(f"feedforward_modules: {extra} are not in target_modules; every feed-forward module must be a target")
        if isinstance(ff, str):
            try:
                re.compile(ff)
            except re.error as exc:
                problems.append(f"feedforward_modules: {ff!r} is not a valid regex ({exc})")
        return problems

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """One vector: the input size for feed-forward targets, else the output size (feedforward_modules defaults per model type)."""
        if module.kind not in ("linear", "conv"):
            return None
        feedforward = self.feedforward_modules
        if feedforward is None:
            feedforward = IA3_FEEDFORWARD.get(shape.model_type or "")
            if feedforward is None:
                return None
        return module.in_features if name_matches(module.name, feedforward) else module.out_features


# What peft 0.21.2 targets by default (keys/values + one feed-forward projection) on these model types.
_ATTN_FF = {
    "llama": (["k_proj", "v_proj"], "down_proj"),
    "mistral": (["k_proj", "v_proj"], "down_proj"),
    "mixtral": (["k_proj", "v_proj"], "w2"),
    "gemma": (["q_proj", "v_proj"], "down_proj"),
    "gemma2": (["q_proj", "v_proj"], "down_proj"),
    "gemma3_text": (["q_proj", "v_proj"], "down_proj"),
    "qwen2": (["q_proj", "v_proj"], "down_proj"),
    "qwen3": (["q_proj", "v_proj"], "down_proj"),
    "phi": (["q_proj", "v_proj"], "fc2"),
    "opt": (["q_proj", "k_proj"], "fc2"),
    "bart": (["q_proj", "v_proj"], "fc2"),
    "gptj": (["q_proj", "v_proj"], "fc_out"),
    "gpt_neo": (["q_proj", "v_proj"], "c_proj"),
    "gpt2": (["c_attn"], "mlp.c_proj"),
    "gpt_bigcode": (["c_attn"], "mlp.c_proj"),
    "bloom": (["query_key_value"], "mlp.dense_4h_to_h"),
    "gpt_neox": (["query_key_value"], "dense_4h_to_h"),
    "falcon": (["query_key_value"], "dense_4h_to_h"),
    "bert": (["key", "value"], "output.dense"),
    "roberta": (["key", "value"], "output.dense"),
    "deberta": (["in_proj"], "output.dense"),
    "deberta-v2": (["key_proj", "value_proj"], "output.dense"),
    "t5": (["k", "v"], "wo"),
}
IA3_TARGETS: dict[str, list[str]] = {m: [*attn, ff] for m, (attn, ff) in _ATTN_FF.items()}
IA3_FEEDFORWARD: dict[str, list[str]] = {m: [ff] for m, (_, ff) in _ATTN_FF.items()}
IA3_TARGETS["mt5"] = ["k", "v", "wi_1"]  # peft's table for mt5 lists no feed-forward module
IA3_FEEDFORWARD["mt5"] = []

register_method(
    MethodSpec(
        peft_type=PeftType.IA3,
        config_cls=IA3Config,
        prefix="ia3_",
        layers="peft_core.tuners.ia3.layer",
        title="IA3",
        default_targets=IA3_TARGETS,
        field_defaults={"feedforward_modules": IA3_FEEDFORWARD},
    )
)

__all__ = ["IA3Config"]
