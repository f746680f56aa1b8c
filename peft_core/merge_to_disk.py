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
import json
import math
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .base_layers import view_for
from .checkpoint import PEFT_PREFIX, load_peft_weights, strip_adapter_name
from .config import PeftConfig, skipping_init
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
    with skipping_init(config):
        layer.add_adapter("default", config, target_name=name, model=skeleton)
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

    merged_modules, written = 0, 0
    for number, shard in enumerate(shard_names, start=1):
        plan = _ShardPlan(base=base, shard=shard, weight_map=weight_map, skeleton=skeleton, config=config, adapter=adapter, targets=targets, saved_copies=saved_copies)
        written += plan.write(out / shard)
        merged_modules += plan.merged_modules
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


class _ShardPlan:
    """Writes one output shard, producing each tensor when the writer reaches it (one module in memory)."""

    def __init__(self, *, base: Path, shard: str, weight_map: dict[str, str] | None, skeleton: nn.Module, config: PeftConfig,
                 adapter: dict[str, torch.Tensor], targets: set[str], saved_copies: dict[str, torch.Tensor]):
        self.base, self.shard, self.weight_map, self.skeleton = base, shard, weight_map, skeleton
        self.config, self.adapter, self.targets, self.saved_copies = config, adapter, targets, saved_copies
        self.pending: dict[str, torch.Tensor] = {}
        self.merged_modules = 0

    def write(self, path: Path) -> int:
        from safetensors import safe_open

        with safe_open(str(self.base / self.shard), framework="pt") as fh:
            self.fh = fh
            self.layout = {k: (fh.get_slice(k).get_dtype(), fh.get_slice(k).get_shape()) for k in fh.keys()}
            return write_safetensors_streaming(path, self.layout, self.produce, fh.metadata() or {"format": "pt"})

    def produce(self, key: str) -> torch.Tensor:
        """The output tensor for `key`: merged if its module is adapted, a trained copy, or as stored."""
        if key in self.pending:
            return self.pending.pop(key)
        module_name, _, pname = key.rpartition(".")
        if module_name in self.targets:
            own = {k.rpartition(".")[2]: self.fh.get_tensor(k) for k in self.layout if k.rpartition(".")[0] == module_name}
            own = _complete(own, module_name, self.skeleton, self.base, self.weight_map, self.shard)
            merged = _merge_module(self.skeleton, module_name, own, self.config, self.adapter)
            self.merged_modules += 1
            for other, value in merged.items():
                if other != pname and f"{module_name}.{other}" in self.layout:
                    self.pending[f"{module_name}.{other}"] = value
            return merged[pname]
        if key in self.saved_copies:
            return self.saved_copies[key]
        return self.fh.get_tensor(key)


_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def write_safetensors_streaming(
    path: Path, layout: dict[str, tuple[str, list[int]]], produce: Callable[[str], torch.Tensor], metadata: dict[str, str]
) -> int:
    """Write a safetensors file one tensor at a time: the header (from the known dtypes and shapes) first,
    then each tensor's bytes as `produce(key)` returns it, so only one tensor is in memory at once."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key, (dtype, shape) in layout.items():
        size = torch.empty(0, dtype=_DTYPES[dtype]).element_size() * math.prod(shape)
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_suffix(path.suffix + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for key, (dtype, shape) in layout.items():
            tensor = produce(key).to(_DTYPES[dtype]).contiguous()
            if list(tensor.shape) != list(shape):
                raise CheckpointError(f"merged {key} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
            if tensor.numel():
                fh.write(tensor.reshape(-1).view(torch.uint8).numpy().data)  # no extra copy of the bytes
            del tensor
    os.replace(tmp, path)
    return offset


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
