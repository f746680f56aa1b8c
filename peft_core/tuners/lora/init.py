"""LoRA initialisations. Each is a named function of (layer, adapter); `initialise` picks one.

- default (True):  A ~ kaiming-uniform(a=sqrt(5)), B = 0 (embeddings: A = 0, B ~ N(0, 1)), so the
                   adapter starts as a no-op.
- "gaussian":      A ~ N(0, 1/r), B = 0 (embeddings as default).
- False:           A and B random: the adapter changes outputs from step 0 (for tests).
- "pissa":         PiSSA (Meng et al. 2024, arXiv 2404.02948): A, B from the top-r singular triplets of
                   W, W replaced by the residual W - s B A. "pissa_niter_K" uses a randomized SVD with K
                   subspace iterations (much faster on big matrices).
- "olora":         OLoRA (Büyükakyüz 2024, arXiv 2406.01775): B = Q[:, :r], A = R[:r] of W = QR, W
                   replaced by W - s B A.
- "orthogonal":    A and B with mutually orthogonal halves so that B A = 0 while neither is zero
                   (gradients reach both from step 0); needs an even r.

PiSSA and OLoRA change the base weight; that goes through the base-layer view, so it works on any
layer the view can write back (Linear, Conv1D, quantized).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ...errors import UnsupportedLayerError

if TYPE_CHECKING:
    from .layer import LoraLayer


def _a_b(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B as (r, in...) and (out, r...) parameter tensors, whatever the layer kind."""
    if hasattr(layer, "lora_embedding_A") and name in layer.lora_embedding_A:
        return layer.lora_embedding_A[name], layer.lora_embedding_B[name]
    return layer.lora_A[name].weight, layer.lora_B[name].weight


def init_default(layer: LoraLayer, name: str) -> None:
    a, b = _a_b(layer, name)
    if layer.view.kind == "embedding":
        nn.init.zeros_(a)
        nn.init.normal_(b)
    else:
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        nn.init.zeros_(b)


def init_gaussian(layer: LoraLayer, name: str) -> None:
    a, b = _a_b(layer, name)
    if layer.view.kind == "embedding":
        nn.init.zeros_(a)
        nn.init.normal_(b)
    else:
        nn.init.normal_(a, std=1 / layer.r[name])
        nn.init.zeros_(b)


def init_random(layer: LoraLayer, name: str) -> None:
    """Keep the random values the tensors were created with (nn.Linear / randn defaults)."""


def _require_linear(layer: LoraLayer, method: str) -> None:
    if layer.view.kind != "linear":
        raise UnsupportedLayerError(f"init_lora_weights={method!r} works on linear layers only, not {type(layer.base_layer).__name__}")


def _set_residual(layer: LoraLayer, name: str, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    pa, pb = _a_b(layer, name)
    with torch.no_grad():
        pa.copy_(a)
        pb.copy_(b)
        layer.view.set_weight(weight - layer.scaling[name] * (b @ a))


def init_pissa(layer: LoraLayer, name: str, niter: int | None = None) -> None:
    _require_linear(layer, "pissa")
    weight = layer.view.get_weight(torch.float32)
    r, s = layer.r[name], layer.scaling[name]
    if niter is None:
        u, sv, vh = torch.linalg.svd(weight, full_matrices=False)
        u, sv, vh = u[:, :r], sv[:r], vh[:r]
    else:
        u, sv, v = torch.svd_lowrank(weight, q=r, niter=niter)
        vh = v.T
    root = torch.sqrt(sv / s)
    _set_residual(layer, name, weight, root[:, None] * vh, u * root[None, :])


def init_olora(layer: LoraLayer, name: str) -> None:
    _require_linear(layer, "olora")
    weight = layer.view.get_weight(torch.float32)
    r = layer.r[name]
    q, rr = torch.linalg.qr(weight)
    _set_residual(layer, name, weight, rr[:r].contiguous(), q[:, :r].contiguous())


def init_orthogonal(layer: LoraLayer, name: str) -> None:
    _require_linear(layer, "orthogonal")
    a, b = _a_b(layer, name)
    r = layer.r[name]
    half = r // 2
    basis, _ = torch.linalg.qr(torch.randn(r, r))  # orthonormal columns: first half ⟂ second half
    left, right = basis[:, :half], basis[:, half:]
    in_f, out_f = layer.view.in_features, layer.view.out_features
    mix_a = torch.randn(half, in_f) / math.sqrt(in_f)
    mix_b = torch.randn(out_f, half) / math.sqrt(max(r, 1))
    with torch.no_grad():
        a.copy_(left @ mix_a)  # rows of A live in span(left)
        b.copy_(mix_b @ right.T)  # B annihilates span(left): B A = mix_b right^T left mix_a = 0


_PISSA_FAST = re.compile(r"pissa_niter_(\d+)")


def initialise(layer: LoraLayer, name: str, how: bool | str) -> None:
    if how is True:
        init_default(layer, name)
    elif how is False:
        init_random(layer, name)
    elif how == "gaussian":
        init_gaussian(layer, name)
    elif how == "pissa":
        init_pissa(layer, name)
    elif isinstance(how, str) and (m := _PISSA_FAST.fullmatch(how)):
        init_pissa(layer, name, niter=int(m.group(1)))
    elif how == "olora":
        init_olora(layer, name)
    elif how == "orthogonal":
        init_orthogonal(layer, name)
    else:  # the config validates first; this guards direct layer use
        raise ValueError(f"unknown init_lora_weights {how!r}")
