"""Prompt learning: prompt tuning, p-tuning and prefix tuning.

These methods inject no layers. The wrapper (peft_core.prompt_learning.PromptLearningModel) prepends
trainable virtual tokens to the input embeddings (prompt tuning, p-tuning) or trainable key/value
prefixes to every attention layer (prefix tuning), computed by a small per-adapter prompt encoder
(encoders.py). The configs here are torch-free, so the studio lists them and renders their forms
without importing torch. Field names and JSON are peft 0.21.2's.

- Prompt tuning: Lester et al. 2021, https://arxiv.org/abs/2104.08691
- P-tuning: Liu et al. 2021, https://arxiv.org/abs/2103.10385
- Prefix tuning: Li & Liang 2021, https://arxiv.org/abs/2101.00190
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import PeftConfig, option
from ...registry import MethodSpec, register_method
from ...types import PeftType

if TYPE_CHECKING:
    from ...shapes import ModelShape

ENCODERS = "peft_core.tuners.prompt_learning.encoders"


@dataclass
class PromptLearningConfig(PeftConfig):
    """Fields every prompt-learning method has; the model-shape ones are filled from the model when empty."""

    is_prompt_learning: ClassVar[bool] = True

    num_virtual_tokens: int = option(20, help="How many virtual tokens (trainable prompt positions) to prepend.", ge=1)
    token_dim: int | None = option(
        None, help="Width of one virtual token; empty = the model's hidden size (per-head width x KV heads for prefix tuning).", ge=1, advanced=True
    )
    num_transformer_submodules: int | None = option(
        None, help="1 for decoder-only models, 2 for encoder-decoder ones; empty = from the task type.", ge=1, le=2, advanced=True
    )
    num_attention_heads: int | None = option(None, help="Attention (KV) heads of the model; empty = from the model config.", ge=1, advanced=True)
    num_layers: int | None = option(None, help="Transformer layers of the model; empty = from the model config.", ge=1, advanced=True)
    modules_to_save: list[str] | None = option(None, help="Modules trained fully and saved with the adapter (a classification head).", advanced=True)

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """The prompt encoder's parameters on a model of `shape` (None when the shape lacks a size it needs)."""
        from ...shapes import saved_whole

        filled = self.filled_for(shape)
        if filled is None:
            return None
        return filled.encoder_parameter_count() + sum(m.numel for m in saved_whole(shape, self.modules_to_save))

    def filled_for(self, shape: ModelShape) -> Any:
        """A copy with the model-dependent fields filled from `shape`, as wrapping fills them from the model."""
        filled = copy.copy(self)
        sizes = {"num_layers": shape.num_layers, "token_dim": shape.hidden_size, "num_attention_heads": shape.num_attention_heads}
        for name, value in sizes.items():
            if getattr(filled, name) is None:
                if value is None:
                    return None
                setattr(filled, name, value)
        filled.adjust_for_kv_heads(shape.extra.get("head_dim"), shape.num_key_value_heads)
        if getattr(filled, "encoder_hidden_size", 0) is None:
            filled.encoder_hidden_size = filled.token_dim
        if filled.num_transformer_submodules is None:
            filled.num_transformer_submodules = 2 if shape.is_encoder_decoder else 1
        return filled

    def adjust_for_kv_heads(self, head_dim: int | None, num_key_value_heads: int | None) -> None:
        """Prefix tuning sizes its prefixes per KV head (grouped-query attention); the others need nothing."""

    def encoder_parameter_count(self) -> int:
        """Trainable parameters of the prompt encoder for this (filled) config."""
        return self.num_virtual_tokens * self.num_transformer_submodules * self.token_dim



@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """Prompt tuning: train a soft prompt of virtual token embeddings prepended to the input."""

    peft_type: ClassVar[PeftType] = PeftType.PROMPT_TUNING

    prompt_tuning_init: str = option(
        "RANDOM",
        help="Start the prompt at random, from the embeddings of a text, or from random vocabulary embeddings.",
        choices=("RANDOM", "TEXT", "SAMPLE_VOCAB"),
    )
    prompt_tuning_init_text: str | None = option(None, help="Text whose token embeddings start the prompt (with prompt_tuning_init TEXT).")
    tokenizer_name_or_path: str | None = option(None, help="Tokenizer folder or Hub id that tokenizes the init text.", advanced=True)
    tokenizer_kwargs: dict | None = option(None, help="Extra arguments for loading that tokenizer (TEXT init only).", advanced=True)

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if self.prompt_tuning_init == "TEXT":
            if not self.tokenizer_name_or_path:
                problems.append("tokenizer_name_or_path: required with prompt_tuning_init 'TEXT'; give the base model's tokenizer folder or Hub id")
            if not self.prompt_tuning_init_text:
                problems.append("prompt_tuning_init_text: required with prompt_tuning_init 'TEXT'; give the text the prompt starts from")
        elif self.tokenizer_kwargs:
            problems.append("tokenizer_kwargs: only used with prompt_tuning_init 'TEXT'; remove it or switch to TEXT init")
        return problems


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """Prefix tuning: train key/value prefixes for every attention layer."""

    peft_type: ClassVar[PeftType] = PeftType.PREFIX_TUNING

    init_weights: str | None = option(None, help="Empty = random prefixes; 'zero' = start at zero.", choices=(None, "zero"), advanced=True)
    encoder_hidden_size: int | None = option(None, help="Hidden width of the projection MLP; empty = token_dim.", ge=1, advanced=True)
    prefix_projection: bool = option(False, help="Reparameterise the prefixes through a two-layer MLP while training.")

    def adjust_for_kv_heads(self, head_dim: int | None, num_key_value_heads: int | None) -> None:
        if num_key_value_heads is not None:
            self.token_dim = (head_dim or self.token_dim // self.num_attention_heads) * num_key_value_heads
            self.num_attention_heads = num_key_value_heads

    def encoder_parameter_count(self) -> int:
        width = self.num_layers * 2 * self.token_dim
        if not self.prefix_projection:
            return self.num_virtual_tokens * width
        hidden = self.encoder_hidden_size
        return self.num_virtual_tokens * self.token_dim + (self.token_dim + 1) * hidden + (hidden + 1) * width


@dataclass
class PromptEncoderConfig(PromptLearningConfig):
    """P-tuning: virtual tokens produced by a trainable MLP or LSTM encoder."""

    peft_type: ClassVar[PeftType] = PeftType.P_TUNING

    encoder_reparameterization_type: str = option("MLP", help="The prompt encoder: an MLP or a bidirectional LSTM plus MLP.", choices=("MLP", "LSTM"))
    encoder_hidden_size: int | None = option(None, help="Hidden width of the encoder; empty = token_dim.", ge=1, advanced=True)
    encoder_num_layers: int = option(2, help="LSTM layers (the MLP always has its fixed 3 linear layers, as in peft).", ge=1, advanced=True)
    encoder_dropout: float = option(0.0, help="Dropout between LSTM layers.", ge=0.0, le=1.0, advanced=True)

    def encoder_parameter_count(self) -> int:
        dim, hidden = self.token_dim, self.encoder_hidden_size
        count = super().encoder_parameter_count()  # the virtual token table
        if self.encoder_reparameterization_type == "MLP":
            return count + (dim + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * dim
        lstm = 0
        for layer in range(self.encoder_num_layers):  # bidirectional: two directions, four gates, two biases
            width_in = dim if layer == 0 else 2 * hidden
            lstm += 2 * (4 * hidden * (width_in + hidden) + 8 * hidden)
        return count + lstm + (2 * hidden + 1) * 2 * hidden + (2 * hidden + 1) * dim


for _type, _cls, _prefix, _title in (
    (PeftType.PROMPT_TUNING, PromptTuningConfig, "prompt_tuning_", "Prompt tuning"),
    (PeftType.PREFIX_TUNING, PrefixTuningConfig, "prefix_tuning_", "Prefix tuning"),
    (PeftType.P_TUNING, PromptEncoderConfig, "p_tuning_", "P-tuning"),
):
    register_method(MethodSpec(peft_type=_type, config_cls=_cls, prefix=_prefix, layers=ENCODERS, title=_title, can_merge=False))

__all__ = ["PrefixTuningConfig", "PromptEncoderConfig", "PromptLearningConfig", "PromptTuningConfig"]
