"""BOFT layers. Per adapter:

    boft_R   (m, k, b, b)   m butterfly factors of k blocks; block R = Cayley((A - A^T) / 2)
    boft_s   (out, 1) linear, (1, out) conv: the learned output scale (peft's shapes)

The rotation acts on the weight's flattened input dimension n = k * b. Factor i groups the inputs its
blocks mix by a butterfly permutation: factor 0 takes consecutive runs of b, factor i takes, in each
run of b * 2^i inputs, b/2 from the first half and the matching b/2 from the second half. So

    merge / conv forward   W' = diag(s) W B,   B = B_0 B_1 ... B_(m-1)
    linear forward         y = s * (base(x B^T) - bias) + bias

and a quantized linear base runs unchanged. peft 0.21.2 builds a single factor whatever
boft_n_butterfly_factor says (it warns "Setting boft_n_butterfly_factor to 1"), so adapters with more
than one factor are peft_core's own; with one factor (the default) both agree exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ...errors import ConfigError
from ...layer import AdapterLayer
from ..oft.layer import MergedWeightForward, cayley, drop_blocks, rotate_blocks
from . import BOFTConfig


def butterfly_permutation(n: int, size: int, level: int) -> torch.Tensor | None:
    """Input indices in the order butterfly factor `level` groups them into blocks (None: as they are)."""
    if level == 0:
        return None
    run, half = size << level, size // 2
    order: list[int] = []
    for start in range(0, n, run):
        for block in range(run // size):
            low = start + block * half
            order += [*range(low, low + half), *range(low + run // 2, low + run // 2 + half)]
    return torch.tensor(order)


class BOFTLayer(AdapterLayer):
    adapter_params = ("boft_R", "boft_s")
    adapter_settings = ("permutations", "dropout_p")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.boft_R = nn.ParameterDict()
        self.boft_s = nn.ParameterDict()

    def create_adapter(self, adapter_name: str, config: BOFTConfig, target_name: str = "", **_: Any) -> None:
        out_f, *rest = self.view.weight_shape
        n = math.prod(rest)
        size, count = self._blocks(config, n, target_name)
        factors = max(config.boft_n_butterfly_factor, 1)
        if factors > 1 and (size % 2 or count % 2 ** (factors - 1)):
            raise ConfigError(
                "BOFTConfig",
                [f"boft_n_butterfly_factor: {factors} factors need an even block size and a block count divisible by "
                 f"{2 ** (factors - 1)}, but {target_name} has {count} blocks of {size}; use fewer factors"],
            )
        self.boft_R[adapter_name] = nn.Parameter(torch.zeros(factors, count, size, size))
        self.boft_s[adapter_name] = nn.Parameter(torch.ones((out_f, 1) if len(rest) == 1 else (1, out_f)))
        if not config.init_weights:
            nn.init.normal_(self.boft_R[adapter_name], std=0.1)
            nn.init.normal_(self.boft_s[adapter_name], mean=1.0, std=0.1)
        self.permutations[adapter_name] = [butterfly_permutation(n, size, i) for i in range(factors)]
        self.dropout_p[adapter_name] = config.boft_dropout

    @staticmethod
    def _blocks(config: BOFTConfig, n: int, target_name: str) -> tuple[int, int]:
        """(block size, block count) for an input of size n."""
        field, given = ("boft_block_num", config.boft_block_num) if config.boft_block_num else ("boft_block_size", config.boft_block_size)
        if n % given:
            raise ConfigError("BOFTConfig", [f"{field}: {given} does not divide the input size {n} of {target_name}; use a divisor of {n}"])
        return (n // given, given) if field == "boft_block_num" else (given, n // given)

    def adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.boft_R[adapter_name].dtype

    def rotations(self, adapter_name: str, dropout: bool = False) -> torch.Tensor:
        """The orthogonal blocks (m, k, b, b) (with multiplicative dropout on one factor if asked)."""
        raw = self.boft_R[adapter_name]
        blocks = cayley((raw - raw.transpose(-1, -2)) / 2)
        p = self.dropout_p[adapter_name]
        if dropout and p > 0:
            factor = int(torch.randint(blocks.shape[0], (1,)))
            blocks = blocks.index_copy(0, torch.tensor([factor], device=blocks.device), drop_blocks(blocks[factor], p)[None])
        return blocks

    def rotate_rows(self, rows: torch.Tensor, adapter_name: str, transposed: bool = False, dropout: bool = False) -> torch.Tensor:
        """rows (..., n) times B, or times B^T (= B^-1) when transposed."""
        blocks = self.rotations(adapter_name, dropout).to(rows.dtype)
        factors = range(blocks.shape[0])
        for i in reversed(factors) if transposed else factors:
            rotation = blocks[i].transpose(-1, -2) if transposed else blocks[i]
            order = self.permutations[adapter_name][i]
            if order is None:
                rows = rotate_blocks(rows, rotation)
            else:
                order = order.to(rows.device)
                rows = rows.index_copy(-1, order, rotate_blocks(rows.index_select(-1, order), rotation))
        return rows

    def _scale(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        return self.boft_s[adapter_name].reshape(-1, 1).to(dtype)

    def rotate_weight(self, adapter_name: str, weight: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        """diag(s) W B (W as (out, n))."""
        rows = self.rotate_rows(weight.reshape(weight.shape[0], -1), adapter_name, dropout=dropout)
        return (rows * self._scale(adapter_name, weight.dtype)).reshape(weight.shape)

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.rotate_weight(adapter_name, weight)

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1) / self._scale(adapter_name, weight.dtype)
        return self.rotate_rows(rows, adapter_name, transposed=True).reshape(weight.shape)


class BOFTLinear(BOFTLayer):
    def adapter_input(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        dtype = self.adapter_dtype(adapter_name)
        return self.rotate_rows(x.to(dtype), adapter_name, transposed=True, dropout=self.training).to(x.dtype)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        dtype = self.adapter_dtype(adapter_name)
        scale = self.boft_s[adapter_name].reshape(-1)
        bias = self.view.bias
        out = result.to(dtype)
        out = out * scale if bias is None else (out - bias.to(dtype)) * scale + bias.to(dtype)
        return out.to(result.dtype)


class BOFTConv(MergedWeightForward, BOFTLayer):
    pass


LAYER_CLASSES = {"linear": BOFTLinear, "conv": BOFTConv}
