"""The LN tuning layer: per adapter a trainable deep copy of the wrapped module (`ln_tuning_layers`).

    y = copy_a(x)        with adapter a active (one at a time, as in peft)
    y = base(x)          disabled

The copy keeps the original's device and dtype (peft does not upcast it). Merging swaps the copy and
the original, so `merge_and_unload` leaves the tuned module in the model; unmerging swaps them back.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from ...errors import MergeError
from ...layer import AdapterLayer


class LNTuningLayer(AdapterLayer):
    adapter_params = ("ln_tuning_layers",)
    upcast_half_adapters = False

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.ln_tuning_layers = nn.ModuleDict()

    def create_adapter(self, adapter_name: str, config: Any, **_: Any) -> None:
        self.ln_tuning_layers[adapter_name] = copy.deepcopy(self.base_layer)

    def base_forward(self, adapter_names: list[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if len(adapter_names) > 1:
            raise MergeError(
                f"LN tuning runs one adapter at a time, but {adapter_names} are active; set_adapter() one of them"
            )
        module = self.ln_tuning_layers[adapter_names[0]] if adapter_names else self.base_layer
        return module(x, *args, **kwargs)

    def merge_is_finite(self, adapter_name: str) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.ln_tuning_layers[adapter_name].parameters())

    def merge_one(self, adapter_name: str, safe_merge: bool = False) -> None:
        if self.merged_adapters:
            raise MergeError(
                f"LN tuning can merge one adapter at a time ({self.merged_adapters[0]!r} is merged); unmerge it first"
            )
        if safe_merge and not self.merge_is_finite(adapter_name):
            raise MergeError(f"merging adapter {adapter_name!r} would put NaN or inf into the model; it was not merged")
        self._swap(adapter_name)

    def unmerge_one(self, adapter_name: str) -> None:
        self._swap(adapter_name)

    def _swap(self, adapter_name: str) -> None:
        self.base_layer, self.ln_tuning_layers[adapter_name] = self.ln_tuning_layers[adapter_name], self.base_layer


LAYER_CLASSES = {"module": LNTuningLayer}
