"""A torch-free description of a model's shape, enough for a config to count its trainable parameters.

Why: the studio shows how many parameters a run trains before it starts, in a process that never
imports torch. Each config knows its own maths (`PeftConfig.trainable_parameter_count(shape)`), so the
count lives next to the method, not in a table in the studio. A shape comes from a real model
(`peft_core.describe.describe_model`, torch) or from an architecture table (the studio's catalog).

Module kinds follow the base-layer views (peft_core/base_layers.py): "linear" (nn.Linear, GPT-2's
Conv1D, quantized linears), "conv", "embedding", and "module" for anything else (norms, containers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .matching import layer_index, name_matches

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ModuleShape:
    """One named module. in/out: linear in/out features, conv channels, embedding (vocab, dim).

    `numel` is every parameter the module holds (its children included): what a full trainable copy of
    it costs (modules_to_save, LN tuning). `bias` is the numel of its own bias (0 when it has none)."""

    name: str
    kind: str
    in_features: int = 0
    out_features: int = 0
    kernel_size: tuple[int, ...] = ()
    groups: int = 1
    bias: int = 0
    numel: int = 0
    parameters: tuple[tuple[str, tuple[int, ...]], ...] = ()  # its own (name, shape), for LoRA's target_parameters
    transposed: bool = False  # expert tensors stored (E, in, out): transformers' `is_transposed`

    @property
    def kernel_numel(self) -> int:
        return math.prod(self.kernel_size) if self.kernel_size else 1

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The weight in base_layers' canonical layout."""
        if self.kind == "conv":
            return (self.out_features, self.in_features // self.groups, *self.kernel_size)
        if self.kind == "embedding":
            return (self.in_features, self.out_features)
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class ModelShape:
    """A model as named modules plus the few global sizes model-level methods need (prompt tuning:
    num_virtual_tokens * hidden_size * transformer submodules). Unknown sizes are None."""

    modules: tuple[ModuleShape, ...]
    model_type: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    vocab_size: int | None = None
    is_encoder_decoder: bool = False
    output_heads: frozenset[str] = frozenset()  # never adapted by all-linear
    input_embedding: str | None = None
    tied_modules: tuple[tuple[str, str], ...] = ()  # (input embedding, output head) sharing one weight
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a method needs, by name ("head_dim": prefix tuning)

    def module(self, name: str) -> ModuleShape | None:
        return next((m for m in self.modules if m.name == name), None)

    def tied_with(self, name: str) -> list[str]:
        """Modules sharing `name`'s weight (an embedding and its tied output head)."""
        return [b if a == name else a for a, b in self.tied_modules if name in (a, b)]


def under(name: str, prefixes: Iterable[str]) -> bool:
    """True if `name` is one of `prefixes` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def select_modules(
    shape: ModelShape,
    targets: list[str] | str,
    *,
    exclude: list[str] | str | None = None,
    layers_to_transform: list[int] | int | None = None,
    layers_pattern: list[str] | str | None = None,
    skip: Iterable[str] = (),
) -> list[ModuleShape]:
    """The modules peft_core's targeting (peft_core/targeting.py) would adapt, on a shape."""
    skip = tuple(skip)
    wanted = [layers_to_transform] if isinstance(layers_to_transform, int) else layers_to_transform
    chosen = []
    for m in shape.modules:
        if not m.name or under(m.name, skip):
            continue
        if targets == ALL_LINEAR:
            if m.kind != "linear" or m.name in shape.output_heads:
                continue
        elif not name_matches(m.name, targets):
            continue
        if exclude is not None and name_matches(m.name, exclude):
            continue
        if wanted is not None and layer_index(m.name, layers_pattern) not in wanted:
            continue
        chosen.append(m)
    return chosen


def saved_whole(shape: ModelShape, modules_to_save: list[str] | None) -> list[ModuleShape]:
    """Outermost modules matched by modules_to_save (each becomes one fully trainable copy)."""
    found: list[ModuleShape] = []
    for m in shape.modules:
        if m.name and name_matches(m.name, modules_to_save or []) and not under(m.name, [f.name for f in found]):
            found.append(m)
    return found


def token_row_width(module: ModuleShape) -> int | None:
    """Width of one token row: an embedding's dim, or a (tied) output head's input size; None for other kinds."""
    if module.kind == "embedding":
        return module.out_features
    if module.kind == "linear":
        return module.in_features
    return None
