"""Merge an adapter into a saved base model, one shard at a time, with bounded memory.

`merge_and_unload` needs the whole model in memory, and merging a 70B model that way runs out of RAM
(peft issue #1939). Here the base model is never loaded: its architecture is built on the meta device
(no memory) only to know each module's type; then each safetensors shard is read, every adapted weight in
it is merged by the method's own layer class (so any tuner that merges, and any layer kind, works the same
way as in memory), and the shard is written out. Peak memory is about one shard plus the adapter.

The output folder is a plain transformers model: safetensors shards (same names and index), config,
generation config and tokenizer files copied from the base.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .base_layers import view_for
from .checkpoint import PEFT_PREFIX, load_peft_weights, strip_adapter_name
from .config import PeftConfig
from .errors import CheckpointError, UnsupportedLayerError
from .registry import spec_for_config
from .targeting import resolve_targets

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
COPIED_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".tiktoken")
ProgressFn = Callable[[int, int, str], None]


def _shards(base_dir: Path) -> tuple[list[str], dict[str, str] | None]:
    if (base_dir / INDEX_NAME).is_file():
        index = json.loads((base_dir / INDEX_NAME).read_text())
        return sorted(set(index["weight_map"].values())), index["weight_map"]
    if (base_dir / SINGLE_NAME).is_file():
        return [SINGLE_NAME], None
    raise CheckpointError(f"{base_dir} holds no safetensors weights ({SINGLE_NAME} or {INDEX_NAME}); save the base model with safetensors first")


def _skeleton(base_dir: Path, config: PeftConfig) -> nn.Module:
    """The base architecture on the meta device: module types and names, no memory."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    auto = {
        "CAUSAL_LM": AutoModelForCausalLM,
        "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM,
        "SEQ_CLS": AutoModelForSequenceClassification,
    }.get(config.task_type or "CAUSAL_LM", AutoModel)
    model_config = AutoConfig.from_pretrained(base_dir)
    with torch.device("meta"):
        return auto.from_config(model_config)


def _without_init(config: PeftConfig) -> PeftConfig:
    """A copy whose init_* switches are off: loaded tensors overwrite the adapter, and an init like PiSSA
    must not rewrite the base weight on the way."""
    changes = {f.name: False for f in dataclasses.fields(config) if f.name.startswith("init_") and isinstance(getattr(config, f.name), (bool, str))}
    clone = copy.deepcopy(config)
    for name, value in changes.items():
        object.__setattr__(clone, name, value)
    return clone


def _merge_module(skeleton: nn.Module, name: str, tensors: dict[str, torch.Tensor], config: PeftConfig, adapter: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Merge the adapter into one module whose own tensors are `tensors` (param name -> tensor)."""
    module = copy.deepcopy(skeleton.get_submodule(name)).to_empty(device="cpu")
    prefix = f"{PEFT_PREFIX}{name}."
    with torch.no_grad():
        for pname, value in tensors.items():
            trained = adapter.get(f"{prefix}base_layer.{pname}")  # a bias trained with bias="all"/"lora_only"
            getattr(module, pname).copy_(value if trained is None else trained)
    view = view_for(module)
    spec = spec_for_config(config)
    layer_cls = spec.layer_classes.get(view.kind) if view is not None else None
    if layer_cls is None:
        raise UnsupportedLayerError(f"cannot merge into {name} ({type(module).__name__}) with {spec.peft_type.value}")
    layer = layer_cls(module, view)
    layer.add_adapter("default", _without_init(config), target_name=name, model=skeleton)
    with torch.no_grad():
        for local_key, param in layer.adapter_parameters("default").items():
            saved = prefix + strip_adapter_name(local_key, "default", layer)
            if saved not in adapter:
                raise CheckpointError(f"the adapter has no tensor {saved}; it does not fit this base model")
            if adapter[saved].shape != param.shape:
                raise CheckpointError(
                    f"{saved} has shape {tuple(adapter[saved].shape)} but this base model needs {tuple(param.shape)}: "
                    "the adapter does not fit this base model (trained on another one?)"
                )
            param.copy_(adapter[saved].to(param.dtype))
    layer.merge(["default"])
    return {pname: getattr(module, pname).detach() for pname in tensors}


def merge_adapter_to_disk(
    base_dir: str | os.PathLike,
    adapter_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write base + adapter merged into `out_dir`; returns {"shards", "merged_modules", "bytes"}."""
    base, out = Path(base_dir), Path(out_dir)
    config = PeftConfig.from_pretrained(adapter_dir)
    if not spec_for_config(config).can_merge:
        raise UnsupportedLayerError(f"{config.peft_type.value} adapters cannot be merged into the base weights")
    shard_names, weight_map = _shards(base)
    adapter = load_peft_weights(adapter_dir)
    skeleton = _skeleton(base, config)
    targets = set(resolve_targets(config, skeleton)) if config.target_modules else set()
    saved_copies = {k[len(PEFT_PREFIX):]: v for k, v in adapter.items() if _is_module_copy(k, targets)}
    out.mkdir(parents=True, exist_ok=True)
    from safetensors import safe_open
    from safetensors.torch import save_file

    merged_modules, written = 0, 0
    for number, shard in enumerate(shard_names, start=1):
        with safe_open(str(base / shard), framework="pt") as fh:
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
            metadata = fh.metadata() or {"format": "pt"}
        by_module: dict[str, dict[str, torch.Tensor]] = {}
        for key in tensors:
            module_name, _, pname = key.rpartition(".")
            if module_name in targets:
                by_module.setdefault(module_name, {})[pname] = tensors[key]
        for module_name, own in by_module.items():
            own = _complete(own, module_name, skeleton, base, weight_map, shard)
            merged = _merge_module(skeleton, module_name, own, config, adapter)
            for pname in by_module[module_name]:
                tensors[f"{module_name}.{pname}"] = merged[pname].to(tensors[f"{module_name}.{pname}"].dtype).contiguous()
            merged_modules += 1
        for key in list(tensors):
            if key in saved_copies:
                tensors[key] = saved_copies[key].to(tensors[key].dtype)
        save_file(tensors, str(out / shard), metadata=metadata)
        written += sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors
        if progress is not None:
            progress(number, len(shard_names), shard)
    if weight_map is not None:
        shutil.copy2(base / INDEX_NAME, out / INDEX_NAME)
    for item in base.iterdir():
        if item.is_file() and item.suffix in COPIED_SUFFIXES and item.name != INDEX_NAME and not (out / item.name).exists():
            shutil.copy2(item, out / item.name)
    if merged_modules != len(targets):
        raise CheckpointError(f"merged {merged_modules} of {len(targets)} adapted modules: the base checkpoint's keys do not match its architecture")
    return {"shards": len(shard_names), "merged_modules": merged_modules, "bytes": written}


def _is_module_copy(key: str, targets: set[str]) -> bool:
    """modules_to_save tensors are stored under the module's own path (no adapter infix)."""
    if not key.startswith(PEFT_PREFIX):
        return False
    module_name = key[len(PEFT_PREFIX):].rpartition(".")[0]
    return module_name not in targets and not any(module_name.startswith(t + ".") for t in targets)


def _complete(own: dict[str, torch.Tensor], module_name: str, skeleton: nn.Module, base: Path, weight_map: dict[str, str] | None, shard: str) -> dict[str, torch.Tensor]:
    """Add a module's tensors that live in another shard (e.g. its bias), read on their own."""
    wanted = {n for n, _ in skeleton.get_submodule(module_name).named_parameters(recurse=False)}
    missing = wanted - set(own)
    if not missing or weight_map is None:
        return own
    from safetensors import safe_open

    full = dict(own)
    for pname in missing:
        other = weight_map.get(f"{module_name}.{pname}")
        if other is None:
            continue
        with safe_open(str(base / other), framework="pt") as fh:
            full[pname] = fh.get_tensor(f"{module_name}.{pname}")
    return full
