"""LN tuning: fine-tune a copy of each targeted module, usually the normalisation layers
(Zhao et al. 2023, "Tuning LayerNorm in Attention", https://arxiv.org/abs/2312.11420).

Each adapter holds a full trainable copy of the targeted module and runs it in place of the frozen
original; "merging" swaps the copy in. Any module can be targeted (LayerNorm, RMSNorm, even a Linear),
so the layer wraps the generic "module" view. Default targets per model type are the norm layers peft
0.21.2 picks on the same architectures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config import TargetingConfig
from ...registry import MethodSpec, register_method
from ...types import PeftType

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape


@dataclass
class LNTuningConfig(TargetingConfig):
    """LN tuning: train a copy of each targeted (normalisation) layer."""

    peft_type: ClassVar[PeftType] = PeftType.LN_TUNING

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """A full trainable copy of the targeted module: all of its parameters."""
        return module.numel


_LLAMA_NORMS = ["input_layernorm", "post_attention_layernorm", "norm"]
_GEMMA2_NORMS = [*_LLAMA_NORMS, "pre_feedforward_layernorm", "post_feedforward_layernorm"]
LN_TUNING_TARGETS: dict[str, list[str]] = {
    "llama": _LLAMA_NORMS,
    "mistral": _LLAMA_NORMS,
    "gemma": _LLAMA_NORMS,
    "gemma2": _GEMMA2_NORMS,
    "gemma3_text": _GEMMA2_NORMS,
    "qwen2": ["post_attention_layernorm"],
    "qwen3": ["post_attention_layernorm"],
    "phi": ["input_layernorm", "final_layernorm"],
    "bloom": ["input_layernorm", "post_attention_layernorm", "ln_f"],
    "falcon": ["input_layernorm", "post_attention_layernorm", "ln_f"],
    "gpt2": ["ln_1", "ln_2", "ln_f"],
    "gptj": ["ln_1", "ln_f"],
    "t5": ["layer_norm", "final_layer_norm"],
    "mt5": ["layer_norm", "final_layer_norm"],
    "bart": ["self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"],
}

register_method(
    MethodSpec(
        peft_type=PeftType.LN_TUNING,
        config_cls=LNTuningConfig,
        prefix="ln_tuning_",
        layers="peft_core.tuners.ln_tuning.layer",
        title="LN tuning",
        default_targets=LN_TUNING_TARGETS,
    )
)

__all__ = ["LNTuningConfig"]
