"""LoRA initialisations. Each is a named function of (layer, adapter); `initialise` picks one.

- default (True):  A ~ kaiming-uniform(a=sqrt(5)), B = 0 (embeddings: A = 0, B ~ N(0, 1)), so the
                   adapter starts as a no-op.
- "gaussian":      A ~ N(0, 1/r), B = 0 (embeddings as default).
- False:           A and B random: the adapter changes outputs from step 0 (for tests).
- "pissa":         PiSSA (Meng et al. 2024, arXiv 2404.02948): with W = U S V^T and s the LoRA scaling,
                   A = sqrt(S_r / s) V_r^T (r, in), B = U_r sqrt(S_r / s) (out, r), and W is replaced by the
                   residual W - s B A. "pissa_niter_K" uses a randomized SVD with K subspace iterations
                   (much faster on big matrices, approximately the same top-r part).
- "olora":         OLoRA (Büyükakyüz 2024, arXiv 2406.01775): W = QR, B = Q[:, :r], A = R[:r], W replaced
                   by W - s B A.
- "orthogonal":    A's rows and B's columns live in complementary halves of a random orthonormal basis
                   of R^r, so B A = 0 while neither is zero (gradients reach both from step 0); needs an
                   even r.

The data-driven inits (PiSSA, OLoRA, orthogonal) work on linear layers of any backend the view can read
and write back (Linear, Conv1D, quantized); as in peft, embeddings keep the default init and convolutions
are refused. For PiSSA and OLoRA, A and B pass through the base layer's dtype, so in half precision they hold
exactly the values peft stores; the residual is computed from the float32 factors.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ...errors import UnsupportedLayerError

if TYPE_CHECKING:
    from .layer import LoraLayer

_PISSA_FAST = re.compile(r"pissa_niter_(\d+)")


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


def _linear_weight(layer: LoraLayer, name: str, method: str) -> torch.Tensor:
    """The base weight (out, in) in float32 for a data-driven init; refuses what it cannot decompose."""
    view = layer.view
    if view.kind != "linear":
        raise UnsupportedLayerError(
            f"init_lora_weights={method!r} works on linear layers only, not {type(layer.base_layer).__name__}; "
            "leave this layer out of target_modules or use init_lora_weights=True"
        )
    r, limit = layer.r[name], min(view.out_features, view.in_features)
    if method != "orthogonal" and r > limit:
        raise UnsupportedLayerError(
            f"init_lora_weights={method!r} needs r <= min(out, in) = {limit} for {type(layer.base_layer).__name__} "
            f"({view.out_features}x{view.in_features}), got r={r}; lower r or set a smaller rank for it in rank_pattern"
        )
    return view.get_weight(torch.float32)


def _set_residual(layer: LoraLayer, name: str, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """Write A and B (rounded through the base dtype, as peft stores them) and W - s B A into the base."""
    pa, pb = _a_b(layer, name)
    base_dtype = layer.view.compute_dtype
    with torch.no_grad():
        pa.copy_(a.to(base_dtype))
        pb.copy_(b.to(base_dtype))
        layer.view.set_weight(weight - (layer.scaling[name] * b) @ a)  # this rounding order is peft's, bit for bit


def init_pissa(layer: LoraLayer, name: str, niter: int | None = None) -> None:
    weight = _linear_weight(layer, name, "pissa" if niter is None else f"pissa_niter_{niter}")
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
    weight = _linear_weight(layer, name, "olora")
    r = layer.r[name]
    q, rr = torch.linalg.qr(weight)
    _set_residual(layer, name, weight, rr[:r].contiguous(), q[:, :r].contiguous())


def init_orthogonal(layer: LoraLayer, name: str) -> None:
    """B A = 0 exactly in exact arithmetic: A = L M_a, B = M_b R^T with [L R] orthonormal (r x r).

    M_a ~ N(0, 1/in) and M_b ~ N(0, 1/out) keep |A| and |B| near sqrt(r/2), independent of layer size.
    """
    _linear_weight(layer, name, "orthogonal")
    r = layer.r[name]
    if r % 2:
        raise UnsupportedLayerError(f"init_lora_weights='orthogonal' needs an even rank, got r={r}; use r={r + 1}")
    half = r // 2
    basis, _ = torch.linalg.qr(torch.randn(r, r, dtype=torch.float64))
    left, right = basis[:, :half], basis[:, half:]
    in_f, out_f = layer.view.in_features, layer.view.out_features
    mix_a = torch.randn(half, in_f, dtype=torch.float64) / math.sqrt(in_f)
    mix_b = torch.randn(out_f, half, dtype=torch.float64) / math.sqrt(out_f)
    pa, pb = _a_b(layer, name)
    with torch.no_grad():  # kept in float32: rounding to a half-precision base dtype would break B A = 0
        pa.copy_(left @ mix_a)
        pb.copy_(mix_b @ right.T)


_DATA_DRIVEN = {"pissa", "olora", "orthogonal", "loftq"}


def initialise(layer: LoraLayer, name: str, how: bool | str, loftq_config: dict[str, int] | None = None) -> None:
    fast = _PISSA_FAST.fullmatch(how) if isinstance(how, str) else None
    if layer.view.kind == "embedding" and (how in _DATA_DRIVEN or fast):
        warnings.warn(
            f"init_lora_weights={how!r} does not apply to Embedding layers; this one gets the default init (as in peft)",
            stacklevel=2,
        )
        how = True
    if how is True:
        init_default(layer, name)
    elif how is False:
        init_random(layer, name)
    elif how == "gaussian":
        init_gaussian(layer, name)
    elif how == "pissa":
        init_pissa(layer, name)
    elif fast:
        init_pissa(layer, name, niter=int(fast.group(1)))
    elif how == "olora":
        init_olora(layer, name)
    elif how == "orthogonal":
        init_orthogonal(layer, name)
    elif how == "loftq":
        from .loftq import init_loftq

        loftq = loftq_config or {}
        init_loftq(layer, name, bits=loftq.get("loftq_bits", 4), iters=loftq.get("loftq_iter", 1))
    else:  # the config validates first; this guards direct layer use
        raise ValueError(f"unknown init_lora_weights {how!r}; use True, False, 'gaussian', 'pissa', 'pissa_niter_K', 'olora' or 'orthogonal'")
