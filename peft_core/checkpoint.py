"""Adapter state dicts and files in PEFT's exact format.

Keys are derived from the model's structure, never from name substrings: each adapter-holding module
lists its tensors for an adapter, and the adapter name is removed from the path. Loading builds the same
map and inverts it, so save and load are symmetric for every tuner:

    in memory   base_model.model.<path>.lora_A.default.weight      -> on disk <...>.lora_A.weight
                base_model.model.<path>.lora_embedding_A.default    -> on disk <...>.lora_embedding_A
                base_model.model.<path>.modules_to_save.default.w   -> on disk base_model.model.<path>.w
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn as nn

from .auxiliary import ModulesToSaveWrapper
from .errors import CheckpointError
from .hub import resolve_file
from .layer import AdapterLayer
from .tuner_model import adapter_modules

SAFETENSORS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_in", "embed_out", "shared")


def strip_adapter_name(local_key: str, adapter_name: str, module: nn.Module) -> str:
    """Remove the adapter segment from a module-local key (and the wrapper infix for modules_to_save)."""
    parts = local_key.split(".")
    if isinstance(module, ModulesToSaveWrapper):
        return ".".join(parts[2:])
    if len(parts) > 1 and parts[1] == adapter_name:
        del parts[1]
    return ".".join(parts)


def _config_of(model: nn.Module, adapter_name: str) -> Any:
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict) and adapter_name in configs:
        return configs[adapter_name]
    for m in model.modules():
        c = getattr(m, "peft_config", None)
        if isinstance(c, dict) and adapter_name in c:
            return c[adapter_name]
    return None


def adapter_tensor_map(model: nn.Module, adapter_name: str = "default", save_embedding_layers: bool | str = "auto") -> dict[str, torch.Tensor]:
    """Saved key -> live tensor for one adapter of `model` (a PeftModel or an injected plain model)."""
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in adapter_modules(model):
        if adapter_name not in module.adapter_names:
            continue
        for local_key, tensor in module.adapter_parameters(adapter_name).items():
            key = strip_adapter_name(local_key, adapter_name, module)
            out[f"{mod_name}.{key}" if mod_name else key] = tensor
        for local_key, tensor in getattr(module, "extra_checkpoint_tensors", lambda _n: {})(adapter_name).items():
            out[f"{mod_name}.{local_key}" if mod_name else local_key] = tensor
    config = _config_of(model, adapter_name)
    bias = getattr(config, "bias", "none")
    params = dict(model.named_parameters())
    if bias == "all":
        for name, p in params.items():
            if name.endswith(".bias") and name not in out and not _is_other_adapter(name, adapter_name, model):
                out[name] = p
    elif isinstance(bias, str) and bias.endswith("_only"):
        for mod_name, module in adapter_modules(model):
            if isinstance(module, AdapterLayer) and adapter_name in module.adapter_names and getattr(module.base_layer, "bias", None) is not None:
                out[f"{mod_name}.base_layer.bias"] = module.base_layer.bias
    if _wants_embeddings(config, save_embedding_layers, model):
        for name, p in params.items():
            leaf = name.split(".")
            if any(part in EMBEDDING_NAMES for part in leaf) and name.endswith("weight") and p.ndim == 2 and "lora_" not in name:
                if not any(name.startswith(k.rsplit(".", 1)[0] + ".") for k in out if "token_adapter" in k):
                    out.setdefault(name, p)
    return out


def _is_other_adapter(name: str, adapter_name: str, model: nn.Module) -> bool:
    configs = _all_adapter_names(model)
    return any(f".{other}." in name or name.endswith(f".{other}") for other in configs if other != adapter_name)


def _all_adapter_names(model: nn.Module) -> list[str]:
    for m in model.modules():
        c = getattr(m, "peft_config", None)
        if isinstance(c, dict):
            return list(c)
    return []


def _wants_embeddings(config: Any, save_embedding_layers: bool | str, model: nn.Module) -> bool:
    """'auto': save full embedding weights when an embedding layer is itself a target (qualified names
    included) or the vocabulary was resized relative to the base config found locally; never asks the Hub."""
    if save_embedding_layers is True:
        return True
    if save_embedding_layers is False or config is None:
        return False
    targets = getattr(config, "target_modules", None)
    if isinstance(targets, (list, set)) and any(t.split(".")[-1] in ("embed_tokens", "lm_head") for t in targets):
        return True
    base_path = getattr(config, "base_model_name_or_path", None)
    model_config = getattr(model, "config", None)
    vocab = getattr(model_config, "vocab_size", None)
    if base_path and vocab is not None and os.path.isfile(os.path.join(base_path, "config.json")):
        import json

        with open(os.path.join(base_path, "config.json"), encoding="utf-8") as fh:
            base_vocab = json.load(fh).get("vocab_size")
        return base_vocab is not None and base_vocab != vocab
    return False


def get_peft_model_state_dict(
    model: nn.Module, state_dict: dict | None = None, adapter_name: str = "default", save_embedding_layers: bool | str = "auto"
) -> dict[str, torch.Tensor]:
    """The adapter's tensors under their PEFT checkpoint keys (detached, on their current device)."""
    return {k: v.detach() for k, v in adapter_tensor_map(model, adapter_name, save_embedding_layers).items()}


def set_peft_model_state_dict(model: nn.Module, peft_model_state_dict: dict[str, torch.Tensor], adapter_name: str = "default") -> tuple[list[str], list[str]]:
    """Copy checkpoint tensors into the model's adapter; returns (missing_keys, unexpected_keys).

    Accepts keys with or without the `base_model.model.` prefix. Shape mismatches raise, listing all.
    """
    targets = adapter_tensor_map(model, adapter_name, save_embedding_layers=False)
    params = dict(model.named_parameters())
    has_prefix = any(k.startswith(PEFT_PREFIX) for k in params)
    loaded: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    for raw_key, value in peft_model_state_dict.items():
        key = raw_key
        if has_prefix and not key.startswith(PEFT_PREFIX):
            key = PEFT_PREFIX + key
        elif not has_prefix and key.startswith(PEFT_PREFIX):
            key = key[len(PEFT_PREFIX):]
        dest = targets.get(key)
        if dest is None:
            dest = params.get(key)
        if dest is None:
            unexpected.append(raw_key)
            continue
        if tuple(dest.shape) != tuple(value.shape):
            mismatched.append(f"{raw_key}: checkpoint {tuple(value.shape)} vs model {tuple(dest.shape)}")
            continue
        with torch.no_grad():
            dest.copy_(value.to(device=dest.device, dtype=dest.dtype))
        loaded.add(key)
    if mismatched:
        raise CheckpointError("checkpoint tensors do not fit the model (was it trained on another base model or rank?):\n  " + "\n  ".join(mismatched))
    missing = [k for k in targets if k not in loaded]
    return missing, unexpected


def save_adapter_weights(state_dict: dict[str, torch.Tensor], directory: str, safe_serialization: bool = True) -> str:
    os.makedirs(directory, exist_ok=True)
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
        t = v.detach().cpu() if v.device.type != "cpu" else v.detach()
        if ptr in seen:  # safetensors refuses tensors that share storage
            t = t.clone()
        seen.add(ptr)
        tensors[k] = t.contiguous()
    if safe_serialization:
        from safetensors.torch import save_file

        path = os.path.join(directory, SAFETENSORS_NAME)
        save_file(tensors, path, metadata={"format": "pt"})
    else:
        path = os.path.join(directory, WEIGHTS_NAME)
        torch.save(tensors, path)
    return path


def load_peft_weights(model_id: str | os.PathLike, device: str | torch.device | None = None, subfolder: str | None = None, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """Read adapter_model.safetensors (or .bin) from a folder or Hub repo."""
    path = resolve_file(model_id, SAFETENSORS_NAME, subfolder=subfolder, required=False, **hub_kwargs)
    if path is not None:
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(device) if device is not None else "cpu")
        except Exception as exc:  # safetensors raises its own error type on corrupt files
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    path = resolve_file(model_id, WEIGHTS_NAME, subfolder=subfolder, required=False, **hub_kwargs)
    if path is None:
        where = os.path.join(os.fspath(model_id), subfolder) if subfolder else os.fspath(model_id)
        raise CheckpointError(f"no adapter weights in {where}: expected {SAFETENSORS_NAME} or {WEIGHTS_NAME}")
    try:
        return torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable adapter weights file: {exc}") from exc


def warn_missing(missing: list[str], unexpected: list[str], where: str) -> None:
    if missing:
        warnings.warn(f"Found missing adapter keys while loading {where}: {missing[:10]}{' ...' if len(missing) > 10 else ''}", stacklevel=3)
    if unexpected:
        warnings.warn(f"ignored checkpoint keys that this model has no place for ({where}): {unexpected[:10]}", stacklevel=3)
