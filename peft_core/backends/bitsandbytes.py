"""bitsandbytes views: Linear8bitLt (LLM.int8) and Linear4bit (nf4/fp4, optional double quant).

Both are "linear" views, so every tuner that adapts nn.Linear adapts them with no code of its own:
`get_weight` dequantizes to the compute dtype and `set_weight` re-quantizes with the layer's own
settings (quant type, block size, double quant, storage dtype). Re-quantizing rounds, so a merged
quantized layer differs slightly from the unmerged one; AdapterLayer.merge warns about that.
"""

from __future__ import annotations

import torch

from ..base_layers import BaseLayerView, register_view
from ..errors import PeftCoreError

try:
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse, dequantize_4bit
except ImportError as exc:  # pragma: no cover - only reached when a bnb layer exists without bnb
    raise PeftCoreError("bitsandbytes is needed for 4-bit/8-bit layers: pip install 'peft-studio[quant]'") from exc


class QuantizedLinearView(BaseLayerView):
    """What both bitsandbytes linears share: linear kind, and a dense twin for exact merges."""

    kind = "linear"
    quantized = True

    def dense_module(self, dtype: torch.dtype | None = None) -> torch.nn.Linear:
        dtype = dtype or self.compute_dtype
        bias = self.bias
        layer = torch.nn.Linear(self.in_features, self.out_features, bias=bias is not None, device=self.device, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(self.get_weight(dtype))
            if bias is not None:
                layer.bias.copy_(bias.detach().to(dtype))
        return layer.requires_grad_(False)


class Linear4bitView(QuantizedLinearView):
    """bnb.nn.Linear4bit: nf4 or fp4 blocks, optionally double-quantized statistics."""

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.module.compute_dtype or torch.float32

    def get_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        weight = self.module.weight
        data, state = weight.data, weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):
            # bitsandbytes repacks 4-bit weights for its CPU kernel on the first inference forward;
            # plain dequantization needs the original layout back.
            data, state = _convert_weight_packed_for_cpu_inverse(data, state)
        return dequantize_4bit(data, state).to(dtype or self.compute_dtype)

    def set_weight(self, weight: torch.Tensor) -> None:
        old = self.module.weight
        state = old.quant_state
        fresh = bnb.nn.Params4bit(
            weight.detach().to("cpu", torch.float32).contiguous().to(state.dtype),
            requires_grad=False,
            quant_type=state.quant_type,
            blocksize=state.blocksize,
            compress_statistics=old.compress_statistics,
            quant_storage=old.quant_storage,
        )
        self.module.weight = fresh.to(old.device)


class Linear8bitView(QuantizedLinearView):
    """bnb.nn.Linear8bitLt: int8 rows with one float scale (SCB) per output row."""

    @property
    def compute_dtype(self) -> torch.dtype:
        bias = self.module.bias
        return bias.dtype if bias is not None and bias.dtype.is_floating_point else torch.float32

    def get_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        weight = self.module.weight
        scb = weight.SCB if weight.SCB is not None else self.module.state.SCB
        dense = weight.data.to(torch.float32) * (scb.to(torch.float32)[:, None] / 127.0)
        return dense.to(dtype or self.compute_dtype)

    def set_weight(self, weight: torch.Tensor) -> None:
        old = self.module.weight
        dense = weight.detach().to("cpu", torch.float16 if old.device.type == "cuda" else torch.float32).contiguous()
        self.module.weight = bnb.nn.Int8Params(dense, requires_grad=False, has_fp16_weights=False).to(old.device)
        self.module.state.CB = None  # cached row-quantized copies of the old weight
        self.module.state.SCB = None


register_view(bnb.nn.Linear4bit, Linear4bitView)
register_view(bnb.nn.Linear8bitLt, Linear8bitView)
