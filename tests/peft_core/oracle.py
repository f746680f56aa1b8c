"""Helpers to compare peft_core with the `peft` package (a test-only oracle)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

peft = pytest.importorskip("peft")

import peft_core  # noqa: E402


def oracle_config(our_config: peft_core.PeftConfig) -> Any:
    """The same config as a peft config object, built from our adapter_config.json dict."""
    data = our_config.to_dict()
    data.pop("auto_mapping", None)
    return peft.PeftConfig.from_peft_type(**data) if hasattr(peft.PeftConfig, "from_peft_type") else peft.LoraConfig(**data)


def twin_models(make_model: Callable[[], nn.Module], config: peft_core.PeftConfig) -> tuple[nn.Module, nn.Module]:
    """(ours, peft's) wrapping identical copies of one base model, peft's adapter weights copied from ours."""
    base = make_model()
    ours = peft_core.get_peft_model(copy.deepcopy(base), copy.deepcopy(config))
    theirs = peft.get_peft_model(copy.deepcopy(base), oracle_config(config))
    state = peft_core.get_peft_model_state_dict(ours)
    result = peft.set_peft_model_state_dict(theirs, state)
    assert not [k for k in result.unexpected_keys if "lora" in k], result.unexpected_keys
    ours.eval()
    theirs.eval()
    return ours, theirs


def outputs(model: nn.Module, inputs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out[0]
