"""TRAINABLE_TOKENS: train only selected rows of an embedding (e.g. new special tokens), nothing else.

The adapter stores the new values of the chosen rows, `trainable_tokens_delta` (n, dim), starting as a
copy of the original rows; the original weight is untouched until a merge. A tied output head follows
the same rows. The layer (shared with LoRA's `trainable_token_indices`) is a torch module, loaded only
when a model is adapted: peft_core/tuners/lora/tokens.py. This file stays torch-free so the studio can
list the method and validate its config without the ML stack.

adapter_config.json has exactly peft's fields: peft's TrainableTokensConfig has no exclude_modules,
modules_to_save or layer selection, so those are fixed class attributes here, not written fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..config import PeftConfig, option
from ..registry import MethodSpec, register_method
from ..shapes import select_modules, token_row_width
from ..types import PeftType

if TYPE_CHECKING:
    from ..shapes import ModelShape


def token_index_problems(field: str, indices: list[int]) -> list[str]:
    """Problems of a list of token ids: empty, negative or repeated (each row is trained once)."""
    if not indices:
        return [f"{field}: the list is empty; give the ids of the tokens to train, e.g. [32000, 32001]"]
    problems = []
    negative = sorted({i for i in indices if i < 0})
    if negative:
        problems.append(f"{field}: token ids must be >= 0, got {negative}")
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        problems.append(f"{field}: token ids {repeated} are listed more than once; list each token once")
    return problems


@dataclass
class TrainableTokensConfig(PeftConfig):
    """Trainable tokens: fine-tune only the embedding rows of chosen token ids."""

    peft_type: ClassVar[PeftType] = PeftType.TRAINABLE_TOKENS
    saves_targeted_embeddings: ClassVar[bool] = False  # the rows are the whole adapter, never the full matrix
    exclude_modules: ClassVar[None] = None
    modules_to_save: ClassVar[None] = None
    layers_to_transform: ClassVar[None] = None
    layers_pattern: ClassVar[None] = None

    token_indices: list[int] = option(
        factory=list, help="Ids of the tokens whose embedding rows are trained (e.g. newly added special tokens)."
    )
    target_modules: list[str] | str | None = option(
        None,
        help="Embedding layers to adapt: names/suffixes or a regex (full match); default: the model's input embedding.",
        advanced=True,
    )
    init_weights: bool = option(
        True, help="Start from the current rows (true) or from random values (false, for tests).", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks() + token_index_problems("token_indices", self.token_indices)
        if isinstance(self.target_modules, list) and not self.target_modules:
            problems.append("target_modules: the list is empty; name the embedding layer or leave it unset for the input embedding")
        return problems

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """len(token_indices) rows per targeted layer (default: the input embedding); a tied output head shares the rows."""
        targets = self.target_modules if self.target_modules is not None else shape.input_embedding
        if targets is None:
            return None
        modules = select_modules(shape, targets)
        rows = [token_row_width(m) for m in modules]
        if not modules or None in rows:
            return None
        return sum(len(self.token_indices) * width for width in rows)  # type: ignore[misc]


register_method(
    MethodSpec(
        peft_type=PeftType.TRAINABLE_TOKENS,
        config_cls=TrainableTokensConfig,
        prefix="trainable_tokens_",
        layers="peft_core.tuners.lora.tokens",
        title="Trainable tokens",
    )
)

__all__ = ["TrainableTokensConfig"]
