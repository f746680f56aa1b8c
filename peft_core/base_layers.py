"""Base-layer views: one uniform face on every kind of layer an adapter can wrap.

A tuner never looks at the base layer's class. It asks its view for the shapes, the weight in the
canonical layout and compute dtype, the plain forward, and to write a merged weight back. Canonical
layouts:

    linear     (out_features, in_features)            nn.Linear, transformers Conv1D, quantized linears
    conv       (out_channels, in_channels/groups, *k) nn.Conv1d/2d/3d
    embedding  (num_embeddings, embedding_dim)        nn.Embedding
    module     (no weight algebra)                    any module, for methods that declare this kind
                                                      (LN tuning tunes a copy of the whole module)

transformers' Conv1D stores its weight transposed (in, out); its view transposes on read and write, so
`fan_in_fan_out` is a property of the base layer and tuners never branch on it. Quantized layers
(bitsandbytes, later HQQ/torchao/GPTQ) are just more views of kind "linear": they dequantize in
`get_weight` and re-quantize in `set_weight`. Adding a backend = adding one view class here (or in its
own module) and calling `register_view`; no tuner changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UnsupportedLayerError


class BaseLayerView:
    """Uniform access to one wrapped base layer. Subclasses set `kind` and override what differs."""

    kind: ClassVar[str] = "linear"
    quantized: ClassVar[bool] = False
    fan_in_fan_out: ClassVar[bool] = False

    def __init__(self, module: nn.Module):
        self.module = module

    # shapes ------------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.module.in_features

    @property
    def out_features(self) -> int:
        return self.module.out_features

    # weights -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.module.weight.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype the layer computes in (for quantized layers, not the storage dtype)."""
        return self.module.weight.dtype

    def get_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight in canonical layout, dequantized, detached (a copy may or may not be made)."""
        w = self.module.weight.detach()
        return w if dtype is None else w.to(dtype)

    def set_weight(self, weight: torch.Tensor) -> None:
        """Write a weight given in canonical layout back into the layer (in place, same dtype)."""
        self.module.weight.data.copy_(weight.to(self.module.weight.dtype))

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.module, "bias", None)

    def set_bias(self, bias: torch.Tensor) -> None:
        if self.module.bias is None:
            self.module.bias = nn.Parameter(bias.to(self.compute_dtype), requires_grad=False)
        else:
            self.module.bias.data.copy_(bias.to(self.module.bias.dtype))

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.module(x, *args, **kwargs)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the weight in canonical layout (what get_weight returns), known without dequantizing."""
        return (self.out_features, self.in_features)

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's operation with `weight` (canonical layout) in place of its own weight."""
        return F.linear(x, weight, bias)

    def dense_module(self, dtype: torch.dtype | None = None) -> nn.Module:
        """A full-precision module computing the same function (quantized views dequantize)."""
        return self.module


class LinearView(BaseLayerView):
    kind = "linear"


class Conv1DView(BaseLayerView):
    """transformers' Conv1D (GPT-2 style): weight stored (in, out)."""

    kind = "linear"
    fan_in_fan_out = True

    @property
    def in_features(self) -> int:
        return self.module.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.module.weight.shape[1]

    def get_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        w = self.module.weight.detach().T
        return w if dtype is None else w.to(dtype)

    def set_weight(self, weight: torch.Tensor) -> None:
        self.module.weight.data.copy_(weight.T.to(self.module.weight.dtype))


class ConvView(BaseLayerView):
    """nn.Conv1d/2d/3d; `dims` tells which."""

    kind = "conv"

    @property
    def dims(self) -> int:
        return len(self.module.kernel_size)

    @property
    def in_features(self) -> int:
        return self.module.in_channels

    @property
    def out_features(self) -> int:
        return self.module.out_channels

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features // self.module.groups, *self.module.kernel_size)

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return self.module._conv_forward(x, weight, bias)  # honours stride, padding (and its mode), groups


class EmbeddingView(BaseLayerView):
    kind = "embedding"

    @property
    def in_features(self) -> int:
        return self.module.num_embeddings

    @property
    def out_features(self) -> int:
        return self.module.embedding_dim

    @property
    def output_scale(self) -> torch.Tensor | float:
        """Factor the layer multiplies looked-up rows by: transformers' scaled word embeddings (Gemma's
        sqrt(dim)) keep it as `embed_scale`; adapters that produce rows must apply it too."""
        scale = getattr(self.module, "embed_scale", None)
        return 1.0 if scale is None else scale

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.in_features, self.out_features)

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        m = self.module
        return F.embedding(x, weight, m.padding_idx, m.max_norm, m.norm_type, m.scale_grad_by_freq, m.sparse)

    def set_bias(self, bias: torch.Tensor) -> None:
        raise UnsupportedLayerError("an Embedding has no bias to merge into")


class ModuleView(BaseLayerView):
    """Any module, seen whole: where it lives and in which dtype, but no weight algebra. The tuner model
    falls back to it only for methods that declare the kind "module" (LN tuning adapts norm layers)."""

    kind = "module"

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.module.parameters(), *self.module.buffers()]

    @property
    def device(self) -> torch.device:
        tensors = self._tensors()
        return tensors[0].device if tensors else torch.device("cpu")

    @property
    def compute_dtype(self) -> torch.dtype:
        return next((t.dtype for t in self._tensors() if t.is_floating_point()), torch.float32)


_VIEWS: list[tuple[type[nn.Module], type[BaseLayerView]]] = []


def register_view(module_cls: type[nn.Module], view_cls: type[BaseLayerView]) -> None:
    """Make `view_cls` the view for `module_cls` (and subclasses without a more specific view)."""
    _VIEWS.append((module_cls, view_cls))


def view_for(module: nn.Module) -> BaseLayerView | None:
    """The most specific registered view for this module, or None if the layer type is unknown."""
    _load_backend_for(module)
    mro = type(module).__mro__
    best: tuple[int, type[BaseLayerView]] | None = None
    for module_cls, view_cls in _VIEWS:
        if isinstance(module, module_cls):
            rank = mro.index(module_cls)
            if best is None or rank < best[0]:
                best = (rank, view_cls)
    return best[1](module) if best else None


def _load_backend_for(module: nn.Module) -> None:
    """Import the view module of the quantization backend that defines this layer class, once."""
    from .backends import LAZY_BACKENDS

    root = type(module).__module__.split(".")[0]
    backend = LAZY_BACKENDS.get(root)
    if backend is not None and backend not in _LOADED_BACKENDS:
        import importlib

        _LOADED_BACKENDS.add(backend)
        importlib.import_module(backend)


_LOADED_BACKENDS: set[str] = set()


def is_linear_like(module: nn.Module) -> bool:
    """True for layers that count as 'linear' for all-linear targeting (incl. quantized linears)."""
    view = view_for(module)
    return view is not None and view.kind == "linear"


def _register_builtin_views() -> None:
    register_view(nn.Linear, LinearView)
    register_view(nn.Conv1d, ConvView)
    register_view(nn.Conv2d, ConvView)
    register_view(nn.Conv3d, ConvView)
    register_view(nn.Embedding, EmbeddingView)
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is a dependency, but keep the core importable without it
        return
    register_view(Conv1D, Conv1DView)


_register_builtin_views()
