"""Wrappers that answer for the module they wrap: an attribute they lack is read from it."""

from __future__ import annotations

from typing import Any

import torch.nn as nn


class Delegating(nn.Module):
    """An nn.Module whose missing attributes come from the module in `self.<_delegate_to>`, so model code and
    callers that read e.g. `.config` or `.generate` on the wrapper still work."""

    _delegate_to = "model"

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == self._delegate_to:  # not set yet (early in __init__): no endless lookup
                raise
            return getattr(getattr(self, self._delegate_to), name)
