"""LoftQ initialisation (Li et al. 2023, https://arxiv.org/abs/2310.08659).

QLoRA starts from Q = quant(W) and a zero update, so the adapted model starts at the quantization
error W - Q. LoftQ instead alternates, for `iters` rounds,

    Q     = dequant(quant(W - s B A))            (nf4 blocks, as bitsandbytes stores them)
    B, A  = best rank-r factors of (W - Q) / s   (SVD, singular values split evenly)

so that Q + s B A is closer to W than Q alone. The base weight is replaced by Q (already on the
quantization grid, so loading this base in 4-bit later stores exactly Q) and A, B start at the factors.
Run it on a full-precision model, save the base, then load that base in 4-bit for training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...errors import PeftCoreError, UnsupportedLayerError

if TYPE_CHECKING:
    from .layer import LoraLayer


def nf4_round_trip(weight: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """quant then dequant with bitsandbytes' nf4, in float32 on the weight's device."""
    try:
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit
    except ImportError as exc:
        raise PeftCoreError("LoftQ needs bitsandbytes for its nf4 quantizer: pip install 'peft-studio[quant]'") from exc
    packed, state = quantize_4bit(weight.float().contiguous(), blocksize=blocksize, quant_type="nf4")
    return dequantize_4bit(packed, state).float()


def int8_round_trip(weight: torch.Tensor) -> torch.Tensor:
    """Row-wise absmax int8, as bitsandbytes' LLM.int8 stores weights."""
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(weight / scale).clamp(-127, 127) * scale


def loftq_factors(weight: torch.Tensor, rank: int, scaling: float, bits: int = 4, iters: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, A, B) with Q on the quantization grid and Q + scaling * B @ A close to `weight`."""
    if bits not in (4, 8):
        raise PeftCoreError(f"loftq_bits must be 4 or 8, got {bits}")
    if iters < 1:
        raise PeftCoreError(f"loftq_iter must be >= 1, got {iters}")
    round_trip = nf4_round_trip if bits == 4 else int8_round_trip
    w = weight.float()
    low_rank = torch.zeros_like(w)
    for _ in range(iters):
        q = round_trip(w - low_rank)
        u, s, vh = torch.linalg.svd((w - q) / scaling, full_matrices=False)
        root = s[:rank].sqrt()
        b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
        low_rank = scaling * (b @ a)
    return q, a, b


def init_loftq(layer: LoraLayer, name: str, bits: int = 4, iters: int = 1) -> None:
    if layer.view.kind != "linear":
        raise UnsupportedLayerError(f"LoftQ works on linear layers only, not {type(layer.base_layer).__name__}")
    if layer.view.quantized:
        raise UnsupportedLayerError(
            "LoftQ needs the full-precision weights: run it on the model loaded without quantization, save that "
            "base, then load it in 4-bit for training"
        )
    weight = layer.view.get_weight(torch.float32)
    q, a, b = loftq_factors(weight, layer.r[name], layer.scaling[name], bits=bits, iters=iters)
    with torch.no_grad():
        layer.lora_A[name].weight.copy_(a)
        layer.lora_B[name].weight.copy_(b)
        layer.view.set_weight(q)
