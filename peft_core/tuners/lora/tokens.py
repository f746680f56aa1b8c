"""Trainable token rows: the layer of TRAINABLE_TOKENS and of LoRA's `trainable_token_indices`.

Only rows `token_indices` of a weight are trained. The adapter holds their new values (peft's name,
although nothing is added):

    trainable_tokens_delta  (n, dim)   starts as a copy of the original rows (init_weights=False: random)

    embedding  W (vocab, dim)   out[p] = delta[j] * embed_scale  where ids[p] == token_indices[j]
    linear     W (vocab, dim)   out[..., token_indices] = x @ delta^T + bias[token_indices]   (a tied lm_head)
    merge      W[token_indices] = delta;  unmerge: W[token_indices] = the rows saved at creation

The forward patches the base layer's output instead of copying the whole weight, so a large vocabulary
costs nothing extra. A tied output head (lm_head sharing the embedding's weight) gets a layer holding
the *same* delta Parameter, so logits follow the trained rows; peft saves that copy for the standalone
method (`lm_head.trainable_tokens_delta`) but not for LoRA's wrapper, and so do we.

Keys: standalone `<p>.trainable_tokens_delta`; through LoRA `<p>.token_adapter.trainable_tokens_delta`
(the rows live in a child module named `token_adapter`, as in peft).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...base_layers import BaseLayerView, view_for
from ...errors import ConfigError, UnsupportedLayerError
from ...layer import AdapterLayer
from ...targeting import name_matches
from ...tuner_model import split_parent

if TYPE_CHECKING:
    from ...tuner_model import TunerModel


class _EmbeddingRows:
    """Token ids select rows: replace the looked-up vectors of the trained ids."""

    @staticmethod
    def apply(layer: TrainableTokensLayer, ids: torch.Tensor, result: torch.Tensor, idx: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        where = torch.full((layer.view.in_features,), -1, dtype=torch.long, device=ids.device)
        where[idx] = torch.arange(len(idx), device=ids.device)
        pos = where[ids]
        rows = delta[pos.clamp_min(0)] * layer.view.output_scale
        return torch.where((pos >= 0).unsqueeze(-1), rows.to(result.dtype), result)


class _LinearRows:
    """Weight rows are outputs (a tied lm_head): recompute the trained logits."""

    @staticmethod
    def apply(layer: TrainableTokensLayer, x: torch.Tensor, result: torch.Tensor, idx: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        cols = F.linear(x.to(delta.dtype), delta)
        bias = layer.view.bias
        if bias is not None:
            cols = cols + bias.detach()[idx].to(cols.dtype)
        return result.index_copy(result.dim() - 1, idx, cols.to(result.dtype))


_RULES = {"embedding": _EmbeddingRows, "linear": _LinearRows}


class TrainableTokensLayer(AdapterLayer):
    """TRAINABLE_TOKENS on an Embedding (or a Linear whose rows are tokens); rows held on the layer."""

    adapter_params: ClassVar[tuple[str, ...]] = ("trainable_tokens_delta",)
    adapter_settings: ClassVar[tuple[str, ...]] = ("token_indices", "original_rows")
    saves_tied_copy: ClassVar[bool] = True

    def __init__(self, base_layer: nn.Module, view: BaseLayerView):
        if view.kind not in _RULES:
            raise UnsupportedLayerError(
                f"trainable tokens need an Embedding or a Linear layer, not {type(base_layer).__name__}; "
                "target the embedding (or a Linear output head) instead"
            )
        super().__init__(base_layer, view)
        self._make_store()
        self.is_tied_copy = False

    def _make_store(self) -> None:
        self.trainable_tokens_delta = nn.ParameterDict()

    @property
    def deltas(self) -> nn.ParameterDict:
        return self.container(self.adapter_params[0])

    # ------------------------------------------------------------------ adapter tensors

    def create_adapter(
        self,
        adapter_name: str,
        config: Any,
        token_indices: list[int] | None = None,
        init_weights: bool | None = None,
        tied_to: TrainableTokensLayer | None = None,
        **_: Any,
    ) -> None:
        """Rows from the config (standalone) or given by LoRA; a tied copy shares its source's Parameter."""
        if tied_to is not None:
            self.is_tied_copy = True
            self.token_indices[adapter_name] = list(tied_to.token_indices[adapter_name])
            self.original_rows[adapter_name] = tied_to.original_rows[adapter_name]
            self.deltas[adapter_name] = tied_to.deltas[adapter_name]
            return
        field = "token_indices" if token_indices is None else "trainable_token_indices"
        indices = list(config.token_indices if token_indices is None else token_indices)
        weight = self.view.get_weight()  # (vocab, dim) for both kinds: row i belongs to token i
        rows = weight.shape[0]
        bad = [i for i in indices if not 0 <= i < rows]
        if bad:
            raise ConfigError(
                type(config).__name__,
                [f"{field}: token ids {bad} are outside {type(self.base_layer).__name__} with {rows} rows; use ids 0..{rows - 1} "
                 "(resize the embeddings first to add tokens)"],
            )
        init = config.init_weights if init_weights is None else init_weights
        original = weight[indices].clone()
        self.token_indices[adapter_name] = indices
        self.original_rows[adapter_name] = original
        self.deltas[adapter_name] = nn.Parameter(original.clone() if init else torch.randn_like(original))

    def adapter_parameters(self, adapter_name: str) -> dict[str, nn.Parameter]:
        if self.is_tied_copy and not self.saves_tied_copy:
            return {}  # the source layer owns (and saves) the shared Parameter
        return super().adapter_parameters(adapter_name)

    def _index(self, adapter_name: str, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.token_indices[adapter_name], dtype=torch.long, device=device)

    # ------------------------------------------------------------------ forward and merge

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        rule = _RULES[self.view.kind]
        return rule.apply(self, x, result, self._index(adapter_name, result.device), self.deltas[adapter_name])

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        delta = self.deltas[adapter_name].detach()
        return weight.index_copy(0, self._index(adapter_name, weight.device), delta.to(weight))

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        original = self.original_rows[adapter_name]
        return weight.index_copy(0, self._index(adapter_name, weight.device), original.to(weight))


class _TokenRows(nn.Module):
    """Holds the rows of LoRA's token adapter under the name peft's keys use (`token_adapter`)."""

    def __init__(self) -> None:
        super().__init__()
        self.trainable_tokens_delta = nn.ParameterDict()


class TrainableTokensWrapper(TrainableTokensLayer):
    """LoRA's `trainable_token_indices`: the same layer, rows under `token_adapter`; tied copies unsaved."""

    adapter_params: ClassVar[tuple[str, ...]] = ("token_adapter.trainable_tokens_delta",)
    saves_tied_copy: ClassVar[bool] = False

    def _make_store(self) -> None:
        self.token_adapter = _TokenRows()


# ---------------------------------------------------------------------- injection helpers


def input_embedding_name(model: nn.Module) -> str:
    """Full name of the model's input embedding (get_input_embeddings, else a module named embed_tokens)."""
    getter = getattr(model, "get_input_embeddings", None)
    emb = None
    if callable(getter):
        try:
            emb = getter()
        except (NotImplementedError, AttributeError):
            emb = None
    for name, module in model.named_modules():
        if emb is not None and module is emb:
            return name
    found = [n for n, _ in model.named_modules() if n.split(".")[-1] == "embed_tokens"]
    if len(found) == 1:
        return found[0]
    raise ConfigError(
        "trainable tokens",
        [f"{type(model).__name__} does not say which module is its input embedding; name it, e.g. "
         "TrainableTokensConfig(target_modules=['emb'], ...) or LoraConfig(trainable_token_indices={'emb': [...]})"],
    )


def default_target_modules(model: nn.Module) -> str:
    """TRAINABLE_TOKENS' default target: the input embedding's full name (peft writes it the same way)."""
    return input_embedding_name(model)


def _tied_head(model: nn.Module, source: TrainableTokensLayer) -> tuple[str, nn.Module] | None:
    """The output head sharing `source`'s weight tensor, if the model ties them."""
    getter = getattr(model, "get_output_embeddings", None)
    head = None
    if callable(getter):
        try:
            head = getter()
        except (NotImplementedError, AttributeError):
            head = None
    if head is None or head is source:
        return None
    base = head.base_layer if isinstance(head, AdapterLayer) else head
    if getattr(base, "weight", None) is not source.base_layer.weight:
        return None
    for name, module in model.named_modules():
        if module is head:
            return name, head
    return None


def wrap_rows(model: nn.Module, name: str, layer_cls: type[TrainableTokensLayer], adapter_name: str, config: Any, **kwargs: Any) -> TrainableTokensLayer:
    """Add a token adapter to module `name`, wrapping it in `layer_cls` unless it already is one."""
    parent, child, module = split_parent(model, name)
    if isinstance(module, layer_cls):
        module.add_adapter(adapter_name, config, **kwargs)
        return module
    if isinstance(module, AdapterLayer):
        raise UnsupportedLayerError(
            f"{name} is already adapted by {type(module).__name__}; its token rows cannot be trained as well. "
            "Remove it from target_modules, or from trainable_token_indices"
        )
    view = view_for(module)
    if view is None:
        raise UnsupportedLayerError(f"trainable tokens cannot adapt {name} of type {type(module).__name__}; target an Embedding")
    layer = layer_cls(module, view)
    layer.add_adapter(adapter_name, config, **kwargs)
    setattr(parent, child, layer)
    return layer


def tie_output_head(model: nn.Module, source: TrainableTokensLayer, layer_cls: type[TrainableTokensLayer], adapter_name: str, config: Any) -> None:
    """If the output head shares the embedding's weight, let its logits follow the trained rows."""
    tied = _tied_head(model, source)
    if tied is not None:
        wrap_rows(model, tied[0], layer_cls, adapter_name, config, tied_to=source)


def after_inject(tuner_model: TunerModel, config: Any, adapter_name: str) -> None:
    """TRAINABLE_TOKENS: the framework wrapped the targets; tie the output head to the input embedding."""
    model = tuner_model.model
    for _, module in list(model.named_modules()):
        if type(module) is TrainableTokensLayer and not module.is_tied_copy and adapter_name in module.adapter_names:
            tie_output_head(model, module, TrainableTokensLayer, adapter_name, config)


def add_lora_token_adapters(tuner_model: TunerModel, config: Any, adapter_name: str) -> None:
    """LoRA's trainable_token_indices: a list trains rows of the input embedding, a dict {module: ids}."""
    spec = getattr(config, "trainable_token_indices", None)
    if not spec:
        return
    model = tuner_model.model
    if isinstance(spec, list):
        input_emb: str | None = input_embedding_name(model)
        targets = {input_emb: list(spec)}
    else:
        input_emb = _safe_input_embedding_name(model)
        targets = _resolve_token_targets(model, spec, type(config).__name__)
    for name, indices in targets.items():
        layer = wrap_rows(model, name, TrainableTokensWrapper, adapter_name, config, token_indices=indices, init_weights=True)
        if name == input_emb:
            tie_output_head(model, layer, TrainableTokensWrapper, adapter_name, config)


def _safe_input_embedding_name(model: nn.Module) -> str | None:
    try:
        return input_embedding_name(model)
    except ConfigError:
        return None


def _resolve_token_targets(model: nn.Module, spec: dict[str, list[int]], config_name: str) -> dict[str, list[int]]:
    """{module-name key: ids} -> {full module name: ids}; keys match a full name or a dotted suffix."""
    names = [n for n, m in model.named_modules() if n and not _inside_adapter(model, n)]
    out: dict[str, list[int]] = {}
    missing = []
    for key, indices in spec.items():
        matched = [n for n in names if name_matches(n, [key])]
        if not matched:
            missing.append(key)
        for n in matched:
            out[n] = list(indices)
    if missing:
        raise ConfigError(config_name, [f"trainable_token_indices: {missing} matched no module; name the embedding, e.g. 'embed_tokens'"])
    return out


def _inside_adapter(model: nn.Module, name: str) -> bool:
    """True for modules inside an adapter layer (its base layer or adapter tensors), never targets."""
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), AdapterLayer) for i in range(1, len(parts)))


LAYER_CLASSES = {"embedding": TrainableTokensLayer, "linear": TrainableTokensLayer}
