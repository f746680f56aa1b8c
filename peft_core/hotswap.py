"""Swap a saved LoRA's weights into an adapter that is already loaded, without adding modules.

Serving code loads one adapter, maybe compiles the model, then replaces the adapter's tensors in place
for each request's LoRA; no module is created or removed, so a compiled graph stays valid. The new
adapter must target the same modules with the same ranks; its scaling (alpha / r) may differ.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import PEFT_PREFIX, adapter_tensor_map, load_peft_weights
from .config import PeftConfig
from .errors import CheckpointError, ConfigError
from .layer import AdapterLayer
from .patterns import pattern_value


def hotswap_adapter_from_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str, config: PeftConfig) -> None:
    current = model.peft_config[adapter_name] if hasattr(model, "peft_config") else None
    if current is None:
        raise ConfigError("hotswap", [f"adapter_name: the model has no adapter {adapter_name!r} to swap into"])
    if current.peft_type != config.peft_type:
        raise ConfigError("hotswap", [f"peft_type: cannot swap a {config.peft_type.value} adapter into a {current.peft_type.value} one"])
    for field in ("use_dora", "use_rslora", "lora_dropout"):
        if getattr(current, field, None) != getattr(config, field, None):
            raise ConfigError("hotswap", [f"{field}: the loaded adapter has {getattr(current, field)!r}, the new one {getattr(config, field)!r}; they must match"])
    targets = adapter_tensor_map(model, adapter_name, save_embedding_layers=False)
    prefixed = {k if k.startswith(PEFT_PREFIX) or not any(t.startswith(PEFT_PREFIX) for t in targets) else PEFT_PREFIX + k: v for k, v in state_dict.items()}
    missing = sorted(set(targets) - set(prefixed))
    extra = sorted(set(prefixed) - set(targets))
    if missing or extra:
        raise CheckpointError(
            "hotswap needs the same target modules: "
            + (f"the new adapter lacks {missing[:5]} " if missing else "")
            + (f"and has tensors for modules the loaded one does not adapt: {extra[:5]}" if extra else "")
        )
    wrong = [f"{k}: {tuple(v.shape)} vs loaded {tuple(targets[k].shape)}" for k, v in prefixed.items() if v.shape != targets[k].shape]
    if wrong:
        raise CheckpointError("hotswap needs equal ranks and shapes:\n  " + "\n  ".join(wrong[:10]))
    with torch.no_grad():
        for key, value in prefixed.items():
            targets[key].copy_(value.to(device=targets[key].device, dtype=targets[key].dtype))
    for module in model.modules():
        if isinstance(module, AdapterLayer) and adapter_name in getattr(module, "scaling", {}):
            r = module.r[adapter_name]
            alpha = _pattern_alpha(config, module, model) if config.alpha_pattern else config.lora_alpha
            module.scaling[adapter_name] = alpha / math.sqrt(r) if config.use_rslora else alpha / r
            module.lora_alpha[adapter_name] = alpha
    model.peft_config[adapter_name] = config


def _pattern_alpha(config: Any, module: nn.Module, model: nn.Module) -> float:
    name = next(n for n, m in model.named_modules() if m is module)
    for prefix in (PEFT_PREFIX, "base_model.model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return pattern_value(config.alpha_pattern, name, config.lora_alpha)


def hotswap_adapter(model: nn.Module, model_name_or_path: str | os.PathLike, adapter_name: str = "default", torch_device: str | None = None, **hub_kwargs: Any) -> None:
    """Replace the weights of loaded adapter `adapter_name` with those saved at `model_name_or_path`."""
    config = PeftConfig.from_pretrained(model_name_or_path, **hub_kwargs)
    state = load_peft_weights(model_name_or_path, device=torch_device, **hub_kwargs)
    hotswap_adapter_from_state_dict(model, state, adapter_name, config)
