"""OFT layers and the block-rotation helpers BOFT shares.

Per adapter `oft_R` (`oft_embedding_R` on embeddings) is a small module whose `weight` (k, b(b-1)/2) holds the strict upper triangle of k
skew-symmetric b x b blocks Q_i (one row shared by all blocks with block_share). The rotation R acts on
the weight's flattened input dimension n = in_features * prod(kernel) = k * b:

    merge / conv forward   W' = W R                      (W as (out, n))
    linear forward         y = base(x R^T)              input rotated block by block, then the frozen layer

so a quantized linear base runs unchanged. R_i is the Cayley transform (I + Q)(I - Q)^-1, or with
use_cayley_neumann the series I + 2P + 2P^2 + ... + 2P^(t-2) + P^(t-1) with P = -Q and t terms (t = 3
acts like 4), which is what peft 0.21.2 computes: its series approximates the *transposed* Cayley
transform, and we follow it so checkpoints give the same outputs. COFT rescales each block in place to
Frobenius norm <= eps / sqrt(k) before use. A block size (or r) that does not divide n is moved to the
nearest divisor (the smaller on a tie), with peft's warning.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn as nn

from ...layer import AdapterLayer
from . import OFTConfig, nearest_divisor


def cayley(q: torch.Tensor) -> torch.Tensor:
    """(I + Q)(I - Q)^-1 for a batch of skew-symmetric blocks (..., b, b): orthogonal."""
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    return torch.linalg.solve(eye - q, eye + q, left=False)


def cayley_neumann(q: torch.Tensor, terms: int) -> torch.Tensor:
    """peft's Neumann-series rotation for skew blocks Q (see the module docstring)."""
    p = -q
    rotation = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device).expand_as(q)
    if terms > 1:
        rotation = rotation + 2 * p
    if terms > 2:
        power = p @ p
        rotation = rotation + 2 * power
        for _ in range(3, terms - 1):
            power = power @ p
            rotation = rotation + 2 * power
        rotation = rotation + power @ p
    return rotation


def rotate_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """x (..., k*b) times diag(blocks): each b-sized slice of the last dim times its (b, b) block; a
    single block (k = 1) is applied to every slice."""
    size = blocks.shape[-1]
    parts = x.reshape(*x.shape[:-1], -1, size)
    return torch.einsum("...kb,kbc->...kc", parts, blocks.expand(parts.shape[-2], size, size)).reshape(x.shape)


def drop_blocks(blocks: torch.Tensor, p: float) -> torch.Tensor:
    """Multiplicative dropout: replace a random fraction p of the (k, b, b) blocks by the identity."""
    count = int(p * blocks.shape[0])
    chosen = (torch.randperm(blocks.shape[0]) < count).nonzero().flatten().to(blocks.device)  # peft's draw
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    return blocks.index_copy(0, chosen, eye.expand(count, -1, -1))


class SkewBlocks(nn.Module):
    """The trainable half of k skew-symmetric b x b blocks (saved as `oft_R.weight`, as in peft)."""

    def __init__(self, blocks: int, size: int):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.zeros(blocks, size * (size - 1) // 2))

    def skew(self) -> torch.Tensor:
        rows, cols = torch.triu_indices(self.size, self.size, 1, device=self.weight.device)
        upper = self.weight.new_zeros(self.weight.shape[0], self.size, self.size)
        upper[:, rows, cols] = self.weight
        return upper - upper.transpose(1, 2)


class MergedWeightForward:
    """Convolutions cannot rotate their input block by block: they run the base operation with the active
    adapters merged into a differentiable copy of the weight (the layer provides `rotate_weight`)."""

    def base_forward(self, adapter_names: list[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not adapter_names:
            return self.base_layer(x, *args, **kwargs)
        dtype = self.adapter_dtype(adapter_names[0])
        weight = self.view.get_weight(dtype)
        for name in adapter_names:
            weight = self.rotate_weight(name, weight, dropout=self.training)
        bias = self.view.bias
        out = self.view.apply_weight(x.to(dtype), weight, None if bias is None else bias.to(dtype))
        return out.to(x.dtype)


class OFTLayer(AdapterLayer):
    adapter_params = ("oft_R",)
    adapter_settings = ("coft", "eps", "neumann_terms", "module_dropout")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        setattr(self, self.adapter_params[0], nn.ModuleDict())  # oft_R, or oft_embedding_R as peft names it there

    @property
    def rotations(self) -> nn.ModuleDict:
        return self.container(self.adapter_params[0])

    def create_adapter(self, adapter_name: str, config: OFTConfig, **_: Any) -> None:
        n = math.prod(self.view.weight_shape[1:])
        if config.r:
            r = nearest_divisor(n, config.r)
            if r != config.r:
                warnings.warn(f"Invalid `r` ({config.r})! Adjusted `r` to ({r}).", stacklevel=4)
            size = n // r
        else:
            size = nearest_divisor(n, config.oft_block_size)
            if size != config.oft_block_size:
                warnings.warn(f"Invalid `oft_block_size` ({config.oft_block_size})! Adjusted `oft_block_size` to ({size}).", stacklevel=4)
        self.rotations[adapter_name] = SkewBlocks(1 if config.block_share else n // size, size)
        if not config.init_weights:
            nn.init.normal_(self.rotations[adapter_name].weight, std=0.1)
        self.coft[adapter_name] = config.coft
        self.eps[adapter_name] = config.eps
        self.neumann_terms[adapter_name] = config.num_cayley_neumann_terms if config.use_cayley_neumann else None
        self.module_dropout[adapter_name] = config.module_dropout

    def adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.rotations[adapter_name].weight.dtype

    def rotation(self, adapter_name: str, dropout: bool = False) -> torch.Tensor:
        """The blocks R_i (k or 1, b, b) of this adapter's rotation (with module dropout if asked)."""
        module = self.rotations[adapter_name]
        if self.coft[adapter_name]:
            with torch.no_grad():
                norms = module.skew().flatten(1).norm(dim=1, keepdim=True)
                limit = self.eps[adapter_name] / module.weight.shape[0] ** 0.5
                module.weight.mul_(torch.where(norms > limit, limit / norms, torch.ones_like(norms)))
        q = module.skew()
        terms = self.neumann_terms[adapter_name]
        blocks = cayley(q) if terms is None else cayley_neumann(q, terms)
        if dropout and self.module_dropout[adapter_name] > 0:
            count = math.prod(self.view.weight_shape[1:]) // blocks.shape[-1]
            blocks = drop_blocks(blocks.expand(count, -1, -1), self.module_dropout[adapter_name])
        return blocks

    def rotate_weight(self, adapter_name: str, weight: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1)
        return rotate_blocks(rows, self.rotation(adapter_name, dropout).to(weight.dtype)).reshape(weight.shape)

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.rotate_weight(adapter_name, weight)

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1)
        inverse = torch.linalg.inv(self.rotation(adapter_name).to(weight.dtype))
        return rotate_blocks(rows, inverse).reshape(weight.shape)


class OFTLinear(OFTLayer):
    def adapter_input(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        blocks = self.rotation(adapter_name, dropout=self.training)
        return rotate_blocks(x.to(blocks.dtype), blocks.transpose(-1, -2)).to(x.dtype)


class OFTConv(MergedWeightForward, OFTLayer):
    pass


class OFTEmbedding(OFTLayer):
    """Rotates each looked-up row: e' = e R^T, so the merged table is W R^T; ids: (...) -> (..., dim).

    peft 0.21.2 rotates embedding rows by the transpose of what it applies to a linear layer's weight;
    we follow it so checkpoints give the same outputs. As in peft, module dropout does not apply here and
    the blocks live in `oft_embedding_R`."""

    adapter_params = ("oft_embedding_R",)

    def row_rotation(self, adapter_name: str) -> torch.Tensor:
        return self.rotation(adapter_name).transpose(-1, -2)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        blocks = self.row_rotation(adapter_name)
        return rotate_blocks(result.to(blocks.dtype), blocks).to(result.dtype)

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return rotate_blocks(weight, self.row_rotation(adapter_name).to(weight.dtype))

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return rotate_blocks(weight, torch.linalg.inv(self.row_rotation(adapter_name).to(weight.dtype)))


LAYER_CLASSES = {"linear": OFTLinear, "conv": OFTConv, "embedding": OFTEmbedding}
