"""The adapter layer: the generic half of every weight tuner.

An adapter layer replaces a targeted module and keeps it as `base_layer`. A tuner subclass declares

    adapter_params    names of its per-adapter containers (nn.ModuleDict / nn.ParameterDict), trainable;
                      a dotted name is a container inside a child module
    adapter_settings  names of its per-adapter plain dicts (rank, scaling, ...), not saved as tensors

and implements `create_adapter`, the forward hooks it needs and either `delta_weight` (additive methods)
or `merged_weight`/`unmerged_weight` (multiplicative ones, with `merged_bias`/`unmerged_bias` when the
bias changes too). The forward pass runs, for the active adapters,

    x' = adapter_input(x)            input-side methods (IA3 feed-forward scaling, OFT/BOFT rotations)
    y  = base_forward(x')            the frozen layer (a tuner that replaces the module overrides it)
    y  = adapter_forward(x, y)       output-side methods (LoRA, LoHa, LoKr: add; IA3: scale)

Everything else (several named adapters, activation, disabling,
deletion, merge/unmerge with safe-merge, trainability, checkpoint keys) lives here and in the tuner
model, once, and is driven by those declarations.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
import torch.nn as nn

from .base_layers import BaseLayerView
from .errors import AdapterNotFoundError, MergeError


class AdapterLayer(nn.Module):
    adapter_params: ClassVar[tuple[str, ...]] = ()
    adapter_settings: ClassVar[tuple[str, ...]] = ()
    # Float adapter tensors are kept in float32 over half-precision bases (they train poorly in half);
    # a tuner whose adapter is a copy of the base module (LN tuning) keeps the base's dtype instead.
    upcast_half_adapters: ClassVar[bool] = True

    def __init__(self, base_layer: nn.Module, view: BaseLayerView):
        super().__init__()
        self.base_layer = base_layer
        self._view = view
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disabled = False
        for name in self.adapter_settings:
            setattr(self, name, {})

    def __getattr__(self, name: str) -> Any:
        """Fall back to the base layer, so model code reading e.g. `self.wo.weight.dtype` still works."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    # ------------------------------------------------------------------ tuner hooks

    def create_adapter(self, adapter_name: str, config: Any, **kwargs: Any) -> None:
        """Create the adapter's tensors in the declared containers (tuner-specific)."""
        raise NotImplementedError(f"{type(self).__name__} must implement create_adapter")

    def adapter_input(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """The input the base layer should see with this adapter active (identity unless overridden)."""
        return x

    def base_forward(self, adapter_names: list[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The frozen layer's output with these adapters active; overridden by tuners that replace the
        module (LN tuning) or must compute with a transformed weight (OFT/BOFT on convolutions)."""
        return self.base_layer(x, *args, **kwargs)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Return `result` (the running output) with this adapter's contribution applied (identity unless
        overridden); `x` is the layer's original input."""
        return result

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The additive weight update in canonical layout (for methods that merge by addition)."""
        raise MergeError(f"{type(self).__name__} cannot be merged into the base weight")

    def delta_bias(self, adapter_name: str) -> torch.Tensor | None:
        """An additive bias update, if the adapter has one."""
        return None

    def merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta_weight(adapter_name).to(weight.dtype)

    def unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight - self.delta_weight(adapter_name).to(weight.dtype)

    def merged_bias(self, adapter_name: str, bias: torch.Tensor | None) -> torch.Tensor | None:
        """The bias after merging (float32), or None to leave it as it is."""
        delta = self.delta_bias(adapter_name)
        if delta is None:
            return None
        return delta.float() if bias is None else bias + delta.float()

    def unmerged_bias(self, adapter_name: str, bias: torch.Tensor | None) -> torch.Tensor | None:
        """The bias after unmerging (float32), or None to leave it as it is."""
        delta = self.delta_bias(adapter_name)
        return None if delta is None or bias is None else bias - delta.float()

    # ------------------------------------------------------------------ bookkeeping

    @property
    def view(self) -> BaseLayerView:
        return self._view

    def container(self, name: str) -> Any:
        """A declared container by name; a dotted name reaches into a child module (peft nests some,
        e.g. LoRA's token rows live under `token_adapter.trainable_tokens_delta`)."""
        obj: Any = self
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    @property
    def adapter_names(self) -> list[str]:
        """Adapters this layer holds, in creation order."""
        names: list[str] = []
        for container in self.adapter_params:
            for key in self.container(container).keys():
                if key not in names:
                    names.append(key)
        for setting in self.adapter_settings:
            for key in getattr(self, setting):
                if key not in names:
                    names.append(key)
        return names

    def adapter_parameters(self, adapter_name: str) -> dict[str, nn.Parameter]:
        """This adapter's tensors keyed by their path inside this layer (adapter name included)."""
        out: dict[str, nn.Parameter] = {}
        for container in self.adapter_params:
            store = self.container(container)
            if adapter_name not in store:
                continue
            item = store[adapter_name]
            if isinstance(item, nn.Module):
                for pname, p in item.named_parameters():
                    out[f"{container}.{adapter_name}.{pname}"] = p
            else:
                out[f"{container}.{adapter_name}"] = item
        return out

    def add_adapter(self, adapter_name: str, config: Any, **kwargs: Any) -> None:
        self.create_adapter(adapter_name, config, **kwargs)
        self._place_adapter(adapter_name)
        if not self.active_adapters:
            self.active_adapters = [adapter_name]
        self.set_requires_grad(adapter_name, adapter_name in self.active_adapters)

    def _place_adapter(self, adapter_name: str) -> None:
        """Put new adapter tensors on the base layer's device; float adapters stay in float32 unless the
        base computes in float32 or float64 (adapters in half precision train poorly)."""
        device = self.view.device
        base_dtype = self.view.compute_dtype
        keep = base_dtype in (torch.float32, torch.float64) or not self.upcast_half_adapters
        dtype = base_dtype if keep else torch.float32
        for p in self.adapter_parameters(adapter_name).values():
            if p.is_floating_point():
                p.data = p.data.to(device=device, dtype=dtype)
            else:
                p.data = p.data.to(device=device)

    def set_requires_grad(self, adapter_name: str, requires_grad: bool) -> None:
        for p in self.adapter_parameters(adapter_name).values():
            p.requires_grad_(requires_grad)

    def set_adapter(self, adapter_names: str | list[str]) -> None:
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        self.active_adapters = [n for n in names if n in self.adapter_names]
        for name in self.adapter_names:
            self.set_requires_grad(name, name in self.active_adapters)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name in self.merged_adapters:
            raise MergeError(f"adapter {adapter_name!r} is merged; unmerge it before deleting it")
        for container in self.adapter_params:
            store = self.container(container)
            if adapter_name in store:
                del store[adapter_name]
        for setting in self.adapter_settings:
            getattr(self, setting).pop(adapter_name, None)
        self.active_adapters = [n for n in self.active_adapters if n != adapter_name]
        if not self.active_adapters and self.adapter_names:
            self.active_adapters = [self.adapter_names[0]]

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disabled:
            if self.merged_adapters:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged_adapters:
            return self.base_layer(x, *args, **kwargs)
        active = [name for name in self.active_adapters if name in self.adapter_names]
        x_in = x
        for name in reversed(active):  # like merged weights W·R1·R2: the last adapter meets the input first
            x_in = self.adapter_input(name, x_in)
        result = self.base_forward(active, x_in, *args, **kwargs)
        for name in active:
            result = self.adapter_forward(name, x, result, *args, **kwargs)
        return result

    # ------------------------------------------------------------------ merge

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def _work_weight(self) -> torch.Tensor:
        """The base weight from the view, in float32 when it is stored in half precision."""
        weight = self.view.get_weight()
        return weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight

    def _bias_float(self) -> torch.Tensor | None:
        bias = self.view.bias
        return None if bias is None else bias.detach().float()

    def merged_tensors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias or None) the base layer would hold with this adapter merged; nothing is written."""
        return self.merged_weight(adapter_name, self._work_weight()), self.merged_bias(adapter_name, self._bias_float())

    def merge_is_finite(self, adapter_name: str) -> bool:
        """Whether merging this adapter would keep weight and bias finite (computed, nothing written):
        the tuner model asks every layer before merging any, so safe_merge is all-or-nothing."""
        weight, bias = self.merged_tensors(adapter_name)
        return bool(torch.isfinite(weight).all()) and (bias is None or bool(torch.isfinite(bias).all()))

    def merge_one(self, adapter_name: str, safe_merge: bool = False) -> None:
        """Fold one adapter into the base layer through its view (tuners that swap modules override this)."""
        weight, bias = self.merged_tensors(adapter_name)
        if safe_merge and not torch.isfinite(weight).all():
            raise MergeError(f"merging adapter {adapter_name!r} would put NaN or inf into the weights; it was not merged")
        self.view.set_weight(weight)
        if bias is not None:
            self.view.set_bias(bias)

    def unmerge_one(self, adapter_name: str) -> None:
        """Take one merged adapter back out of the base layer."""
        self.view.set_weight(self.unmerged_weight(adapter_name, self._work_weight()))
        bias = self.unmerged_bias(adapter_name, self._bias_float())
        if bias is not None:
            self.view.set_bias(bias)

    def merge(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Fold adapters into the base weight; with safe_merge, check the result before writing it."""
        names = self.active_adapters if adapter_names is None else adapter_names
        if self.view.quantized and any(n not in self.merged_adapters for n in names):
            warnings.warn(
                f"merging into a quantized {type(self.base_layer).__name__} re-quantizes the weight: outputs may differ "
                "slightly from the unmerged model (rounding)",
                stacklevel=3,
            )
        for name in names:
            if name not in self.adapter_names:
                raise AdapterNotFoundError(f"no adapter named {name!r} in this layer (has {self.adapter_names})")
            if name in self.merged_adapters:
                continue
            self.merge_one(name, safe_merge)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Take merged adapters back out of the base weight, last merged first."""
        while self.merged_adapters:
            self.unmerge_one(self.merged_adapters.pop())

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names}, active={self.active_adapters}, merged={self.merged_adapters}"
