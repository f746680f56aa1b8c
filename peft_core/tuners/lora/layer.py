"""LoRA layers (Hu et al. 2021, https://arxiv.org/abs/2106.09685).

    h = W0 x + scaling * B A dropout(x),   A: (r, in), B: (out, r), scaling = alpha / r (or alpha / sqrt(r))

One class per layer kind, because the tensors differ in shape and storage (and so in checkpoint keys):

    LoraLinear     lora_A: nn.Linear(in, r), lora_B: nn.Linear(r, out)         x: (..., in) -> (..., out)
    LoraConv       lora_A: ConvNd(in, r, k), lora_B: ConvNd(r, out, 1)         x: (N, in, *S) -> (N, out, *S')
    LoraEmbedding  lora_embedding_A: (r, num), lora_embedding_B: (dim, r)      ids: (...) -> (..., dim)

They share the maths below in `LoraLayer`; the variant (plain LoRA or DoRA) is a strategy object picked
per adapter (variants.py). Quantized base layers need nothing here: the base-layer view dequantizes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import UnsupportedLayerError
from ...layer import AdapterLayer
from ...patterns import pattern_value
from .config import LoraConfig
from .init import initialise
from .variants import variant_for


class LoraLayer(AdapterLayer):
    adapter_settings = ("r", "lora_alpha", "scaling", "dropout_p", "variant")

    def create_adapter(self, adapter_name: str, config: LoraConfig, target_name: str = "", **_: Any) -> None:
        r = pattern_value(config.rank_pattern, target_name, config.r)
        alpha = pattern_value(config.alpha_pattern, target_name, config.lora_alpha)
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = alpha
        self.scaling[adapter_name] = alpha / math.sqrt(r) if config.use_rslora else alpha / r
        self.dropout_p[adapter_name] = config.lora_dropout
        self.create_tensors(adapter_name, r, config.lora_bias)
        initialise(self, adapter_name, config.init_lora_weights, config.loftq_config)
        self.variant[adapter_name] = variant_for(config)
        self.variant[adapter_name].init(self, adapter_name)

    # kind-specific pieces -------------------------------------------------------------------------
    def create_tensors(self, adapter_name: str, r: int, lora_bias: bool) -> None:
        raise NotImplementedError

    def lora_path(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """B(A(x)) without scaling, in the adapter's dtype."""
        raise NotImplementedError

    def lora_weight(self, adapter_name: str) -> torch.Tensor:
        """B @ A in the base weight's canonical layout, without scaling."""
        raise NotImplementedError

    def dropout(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout_p[adapter_name]
        return F.dropout(x, p, self.training) if p > 0 else x

    def adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return next(iter(self.adapter_parameters(adapter_name).values())).dtype

    # generic maths ----------------------------------------------------------------------------------
    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.variant[adapter_name].forward(self, adapter_name, x, result)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        return self.lora_weight(adapter_name) * self.scaling[adapter_name]

    def delta_bias(self, adapter_name: str) -> torch.Tensor | None:
        bias = getattr(self.lora_B[adapter_name], "bias", None) if hasattr(self, "lora_B") and adapter_name in self.lora_B else None
        return None if bias is None else bias.detach() * self.scaling[adapter_name]

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.variant[adapter_name].merged_weight(self, adapter_name, weight)

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.variant[adapter_name].unmerged_weight(self, adapter_name, weight)


class LoraLinear(LoraLayer):
    adapter_params = ("lora_A", "lora_B", "lora_magnitude_vector")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_magnitude_vector = nn.ParameterDict()

    def create_tensors(self, adapter_name: str, r: int, lora_bias: bool) -> None:
        self.lora_A[adapter_name] = nn.Linear(self.view.in_features, r, bias=False)
        self.lora_B[adapter_name] = nn.Linear(r, self.view.out_features, bias=lora_bias)

    def lora_path(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B[adapter_name](self.lora_A[adapter_name](x))

    def lora_weight(self, adapter_name: str) -> torch.Tensor:
        return self.lora_B[adapter_name].weight @ self.lora_A[adapter_name].weight

    def column_norm(self, weight: torch.Tensor) -> torch.Tensor:
        """Norm of each output's weight row: (out,)."""
        return weight.norm(p=2, dim=1)

    def per_output(self, vector: torch.Tensor, weight_like: bool) -> torch.Tensor:
        return vector.view(-1, 1) if weight_like else vector

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)


class LoraConv(LoraLayer):
    adapter_params = ("lora_A", "lora_B", "lora_magnitude_vector")

    def __init__(self, base_layer: nn.Module, view: Any):
        if base_layer.groups != 1:
            raise UnsupportedLayerError(f"LoRA on grouped convolutions (groups={base_layer.groups}) is not supported")
        super().__init__(base_layer, view)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_magnitude_vector = nn.ParameterDict()

    def create_tensors(self, adapter_name: str, r: int, lora_bias: bool) -> None:
        base = self.base_layer
        conv_cls = type(base) if type(base) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) else (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.view.dims - 1]
        self.lora_A[adapter_name] = conv_cls(
            base.in_channels, r, base.kernel_size, base.stride, base.padding, dilation=base.dilation, bias=False
        )
        self.lora_B[adapter_name] = conv_cls(r, base.out_channels, 1, 1, bias=lora_bias)

    def lora_path(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B[adapter_name](self.lora_A[adapter_name](x))

    def lora_weight(self, adapter_name: str) -> torch.Tensor:
        a = self.lora_A[adapter_name].weight  # (r, in, *k)
        b = self.lora_B[adapter_name].weight.flatten(1)  # (out, r)
        return torch.einsum("or,ri...->oi...", b, a)

    def column_norm(self, weight: torch.Tensor) -> torch.Tensor:
        """Norm per output channel, shaped (1, out, 1, ...) as peft stores DoRA's magnitude for convs."""
        return weight.flatten(1).norm(p=2, dim=1).view(1, -1, *([1] * self.view.dims))

    def per_output(self, vector: torch.Tensor, weight_like: bool) -> torch.Tensor:
        flat = vector.reshape(-1)
        return flat.view(-1, *([1] * (self.view.dims + 1))) if weight_like else flat.view(1, -1, *([1] * self.view.dims))

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.view.dims - 1]
        return conv(x, weight, None, base.stride, base.padding, base.dilation, base.groups)


class LoraEmbedding(LoraLayer):
    adapter_params = ("lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.lora_embedding_A = nn.ParameterDict()
        self.lora_embedding_B = nn.ParameterDict()
        self.lora_magnitude_vector = nn.ParameterDict()

    def create_tensors(self, adapter_name: str, r: int, lora_bias: bool) -> None:
        if lora_bias:
            raise UnsupportedLayerError("lora_bias is not available for Embedding layers")
        self.lora_embedding_A[adapter_name] = nn.Parameter(torch.randn(r, self.view.in_features))
        self.lora_embedding_B[adapter_name] = nn.Parameter(torch.randn(self.view.out_features, r))

    def dropout(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        return x  # token ids: nothing to drop

    def lora_path(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        after_a = F.embedding(
            x, self.lora_embedding_A[adapter_name].T, base.padding_idx, base.max_norm, base.norm_type, base.scale_grad_by_freq, base.sparse
        )
        return (after_a @ self.lora_embedding_B[adapter_name].T) * self.view.output_scale  # Gemma-style embed_scale

    def lora_weight(self, adapter_name: str) -> torch.Tensor:
        return (self.lora_embedding_B[adapter_name] @ self.lora_embedding_A[adapter_name]).T

    def column_norm(self, weight: torch.Tensor) -> torch.Tensor:
        """Norm per embedding dimension (over the vocabulary): (dim,)."""
        return weight.norm(p=2, dim=0)

    def per_output(self, vector: torch.Tensor, weight_like: bool) -> torch.Tensor:
        return vector.view(1, -1) if weight_like else vector

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        return F.embedding(x, weight, base.padding_idx, base.max_norm, base.norm_type, base.scale_grad_by_freq, base.sparse)


LAYER_CLASSES = {"linear": LoraLinear, "conv": LoraConv, "embedding": LoraEmbedding}

from .combine import add_weighted_adapter  # noqa: E402, F401  (model-level extension, found by TunerModel)
from .extra_targets import after_inject  # noqa: E402, F401  (target_parameters and token rows, run by TunerModel)
