"""Fully trained copies of whole modules (`modules_to_save`), kept per adapter.

The wrapper keeps the frozen original and one trainable copy per adapter; the active adapter's copy
runs. On disk the copy's tensors are saved under the original module's path (no wrapper infix), as
peft does, so a classification head trained here loads in peft and back.
"""

from __future__ import annotations

import copy
from typing import Any

import torch.nn as nn

from .errors import AdapterNotFoundError


class ModulesToSaveWrapper(nn.Module):
    def __init__(self, module: nn.Module, adapter_name: str):
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter: str | None = None
        self.disabled = False
        self.add_adapter(adapter_name)

    @property
    def adapter_names(self) -> list[str]:
        return list(self.modules_to_save.keys())

    def add_adapter(self, adapter_name: str) -> None:
        if adapter_name in self.modules_to_save:
            return
        clone = copy.deepcopy(self.original_module)
        for p in clone.parameters():
            p.requires_grad_(True)
        self.modules_to_save[adapter_name] = clone
        for p in self.original_module.parameters():
            p.requires_grad_(False)
        if self.active_adapter is None:
            self.active_adapter = adapter_name

    def adapter_parameters(self, adapter_name: str) -> dict[str, nn.Parameter]:
        if adapter_name not in self.modules_to_save:
            return {}
        return {f"modules_to_save.{adapter_name}.{n}": p for n, p in self.modules_to_save[adapter_name].named_parameters()}

    def set_adapter(self, adapter_names: str | list[str]) -> None:
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        mine = [n for n in names if n in self.modules_to_save]
        self.active_adapter = mine[0] if mine else None
        for name, module in self.modules_to_save.items():
            for p in module.parameters():
                p.requires_grad_(name == self.active_adapter)

    def set_requires_grad(self, adapter_name: str, requires_grad: bool) -> None:
        for p in self.adapter_parameters(adapter_name).values():
            p.requires_grad_(requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.modules_to_save:
            raise AdapterNotFoundError(f"no adapter named {adapter_name!r} in this module")
        del self.modules_to_save[adapter_name]
        if self.active_adapter == adapter_name:
            self.active_adapter = next(iter(self.modules_to_save.keys()), None)

    @property
    def weight(self):  # transformers looks up e.g. classifier.weight for dtype/tying checks
        return self._current().weight

    def __getattr__(self, name: str) -> Any:
        """Fall back to the module in use, so model code reading e.g. `self.score.out_features` works."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name in ("original_module", "modules_to_save", "active_adapter", "disabled"):
                raise
            return getattr(self._current(), name)

    def _current(self) -> nn.Module:
        if self.disabled or self.active_adapter is None:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._current()(*args, **kwargs)

    def unwrap(self, adapter_name: str | None) -> nn.Module:
        """The module to put back when the model is unloaded (merged: the trained copy)."""
        if adapter_name is not None and adapter_name in self.modules_to_save:
            return self.modules_to_save[adapter_name]
        return self.original_module
