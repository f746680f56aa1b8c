"""The tuner model: injects adapter layers into a user model and runs their whole lifecycle.

One class for every weight method. The method's registry entry says which layer class wraps which kind
of base layer; this class does the rest: targeting, several named adapters, activation, disabling,
deletion, trainability, modules_to_save, merge/unmerge/merge_and_unload/unload. It wraps the user model
as `.model`, so inside a PeftModel parameter names start with `base_model.model.` as in peft.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import torch.nn as nn

from .auxiliary import ModulesToSaveWrapper
from .base_layers import ModuleView, view_for
from .config import AdapterConfig, PeftConfig
from .delegation import Delegating
from .errors import AdapterNotFoundError, ConfigError, MergeError, UnsupportedLayerError
from .layer import AdapterLayer
from .registry import MethodSpec, spec_for_config
from .targeting import check_unmatched_entries, default_targets_for, resolve_targets


def split_parent(model: nn.Module, name: str) -> tuple[nn.Module, str, nn.Module]:
    """(parent module, attribute name, module) for a dotted module name."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, child, getattr(parent, child)


def adapter_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every module that holds per-adapter state (adapter layers and auxiliary wrappers)."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer | ModulesToSaveWrapper) or getattr(module, "holds_adapters", False):
            yield name, module


class TunerModel(Delegating):
    def __init__(self, model: nn.Module, config: PeftConfig, adapter_name: str = "default", optional_modules_to_save: tuple[str, ...] = ()):
        super().__init__()
        self.model = model
        self.peft_config: dict[str, PeftConfig] = {}
        self.active_adapter: str | list[str] = adapter_name
        # modules_to_save entries a task class adds for every model (classifier, score): no warning when absent
        self.optional_modules_to_save = tuple(optional_modules_to_save)
        self.inject_adapter(config, adapter_name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    @property
    def active_adapters(self) -> list[str]:
        return [self.active_adapter] if isinstance(self.active_adapter, str) else list(self.active_adapter)

    # ------------------------------------------------------------------ injection

    def prepare_config(self, config: AdapterConfig, spec: MethodSpec) -> AdapterConfig:
        """Fill defaults that depend on the model (targets by model_type)."""
        if config.target_modules is None and not getattr(config, "target_parameters", None):
            default = default_targets_for(self.model, spec.default_targets)
            from_model = getattr(spec.layer_module, "default_target_modules", None)
            if default is None and from_model is not None:  # e.g. trainable tokens: the input embedding
                default = from_model(self.model)
            if default is None:
                model_type = getattr(getattr(self.model, "config", None), "model_type", None)
                raise ConfigError(
                    type(config).__name__,
                    [
                        f"target_modules: not set, and there is no default for model type {model_type!r}; "
                        "name the modules to adapt (e.g. ['q_proj', 'v_proj']) or use 'all-linear'"
                    ],
                )
            config.target_modules = default
        model_type = getattr(getattr(self.model, "config", None), "model_type", None)
        for name, table in spec.field_defaults.items():
            if getattr(config, name) is None:
                value = default_targets_for(self.model, table)
                if value is None:
                    help_line = next(f.metadata.get("help", "") for f in dataclasses.fields(config) if f.name == name)
                    raise ConfigError(
                        type(config).__name__,
                        [f"{name}: not set, and there is no default for model type {model_type!r}; set it ({help_line})"],
                    )
                setattr(config, name, value)
        return config

    def inject_adapter(self, config: PeftConfig, adapter_name: str) -> None:
        if adapter_name in self.peft_config:
            raise ConfigError("adapter", [f"adapter_name: an adapter named {adapter_name!r} already exists; pick another name"])
        if self.peft_config:
            first = next(iter(self.peft_config.values()))
            if first.peft_type != config.peft_type:
                raise ConfigError(
                    "adapter",
                    [f"peft_type: this model holds {first.peft_type.value} adapters; adding {config.peft_type.value} "
                     "to the same model is not supported, wrap a fresh model instead"],
                )
        spec = spec_for_config(config)
        if adapter_name in spec.prefix:
            warnings.warn(f"adapter name {adapter_name!r} is part of the method prefix {spec.prefix!r}; keys may be ambiguous", stacklevel=3)
        config = self.prepare_config(config, spec)
        before = getattr(spec.layer_module, "before_inject", None)
        if before is not None:  # method-specific refusals before anything is changed (AdaLoRA: one trained adapter)
            before(self, config, adapter_name)
        # Modules trained whole (modules_to_save, wrapped below or by an earlier adapter) are never adapted:
        # an adapter inside one would be copied into the trainable copy and the frozen original alike.
        to_save = config.modules_to_save or []
        skip = [
            n for n, m in self.model.named_modules()
            if n and (isinstance(m, ModulesToSaveWrapper) or any(n == e or n.endswith("." + e) for e in to_save))
        ]
        # Inside an existing adapter layer only the layer itself is a target (a second adapter is added to
        # it); its base_layer and adapter sub-modules (lora_A.<name> is an nn.Linear) never are.
        skip += [f"{n}.{child}" for n, m in self.model.named_modules() if isinstance(m, AdapterLayer) for child, _ in m.named_children()]
        names: list[str] = []
        if config.target_modules is not None and not (isinstance(config.target_modules, list) and not config.target_modules):
            names = resolve_targets(config, self.model, skip)
            missed = check_unmatched_entries(config, names)
            saved_whole = [t for t in missed if any(n == t or n.endswith("." + t) for n in skip)]
            if saved_whole:
                warnings.warn(f"target_modules entries {saved_whole} are trained whole as modules_to_save, so they get no adapter", stacklevel=3)
            if missed := [t for t in missed if t not in saved_whole]:
                warnings.warn(f"target_modules entries {missed} matched no module (typo?)", stacklevel=3)
        for name in names:
            self._inject_one(spec, config, adapter_name, name)
        self.peft_config[adapter_name] = config
        if spec.after_inject is not None:
            spec.after_inject(self, config, adapter_name)
        for name in config.modules_to_save or []:
            self._wrap_module_to_save(name, adapter_name)
        self._mark_trainable(config, adapter_name)

    def _inject_one(self, spec: MethodSpec, config: PeftConfig, adapter_name: str, name: str) -> None:
        parent, child, module = split_parent(self.model, name)
        if isinstance(module, AdapterLayer):
            if type(module) not in spec.layer_classes.values():
                raise UnsupportedLayerError(f"{name} already carries a {type(module).__name__}; one method per model")
            module.add_adapter(adapter_name, config, target_name=name, model=self.model)
            return
        view = view_for(module)
        if (view is None or view.kind not in spec.layer_classes) and "module" in spec.layer_classes:
            view = ModuleView(module)  # methods that adapt whole modules (LN tuning) take any module
        layer_cls = spec.layer_classes.get(view.kind) if view is not None else None
        if layer_cls is None:
            kinds = ", ".join(sorted(spec.layer_classes))
            raise UnsupportedLayerError(
                f"{config.peft_type.value} cannot adapt {name!r} of type {type(module).__name__}; "
                f"it supports layers of kind: {kinds}. Remove it from target_modules."
            )
        layer = layer_cls(module, view)
        layer.add_adapter(adapter_name, config, target_name=name, model=self.model)
        setattr(parent, child, layer)

    def _wrap_module_to_save(self, name_spec: str, adapter_name: str) -> None:
        found = False
        for name, module in list(self.model.named_modules()):
            if not name or not (name == name_spec or name.endswith("." + name_spec)):
                continue
            if any(isinstance(m, ModulesToSaveWrapper) for m in self._ancestors(name)):
                continue
            found = True
            parent, child, module = split_parent(self.model, name)
            if isinstance(module, ModulesToSaveWrapper):
                module.add_adapter(adapter_name)
            elif isinstance(module, AdapterLayer):
                raise ConfigError("adapter", [f"modules_to_save: {name!r} is also a target of the adapter; list it in only one"])
            else:
                setattr(parent, child, ModulesToSaveWrapper(module, adapter_name))
        if not found and name_spec not in self.optional_modules_to_save:
            warnings.warn(f"modules_to_save entry {name_spec!r} matched no module (typo?)", stacklevel=4)

    def _ancestors(self, name: str) -> list[nn.Module]:
        parts = name.split(".")
        return [self.model.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]

    def _mark_trainable(self, config: PeftConfig, adapter_name: str) -> None:
        """Freeze the base model; train only the active adapters' tensors (and biases per `bias`)."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        active = set(self.active_adapters)
        for _, module in adapter_modules(self.model):
            for name in module.adapter_names:
                module.set_requires_grad(name, name in active and not self.peft_config[name].inference_mode)
        first = self.active_adapters[0] if self.active_adapters else None
        bias = getattr(self.peft_config[first], "bias", "none") if first in self.peft_config else "none"
        if bias == "all":
            for n, p in self.model.named_parameters():
                if n.endswith("bias"):
                    p.requires_grad_(True)
        elif bias.endswith("_only"):
            for _, module in adapter_modules(self.model):
                if isinstance(module, AdapterLayer) and getattr(module.base_layer, "bias", None) is not None:
                    module.base_layer.bias.requires_grad_(True)

    # ------------------------------------------------------------------ adapters

    def adapter_layers(self) -> Iterator[AdapterLayer]:
        for m in self.model.modules():
            if isinstance(m, AdapterLayer):
                yield m

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        for n in names:
            if n not in self.peft_config:
                raise AdapterNotFoundError(f"no adapter named {n!r}; this model has {list(self.peft_config)}")
        for _, module in adapter_modules(self.model):
            module.set_adapter(names)
        self.active_adapter = adapter_name
        self._mark_trainable(self.peft_config[names[0]], names[0])

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            raise AdapterNotFoundError(f"no adapter named {adapter_name!r}; this model has {list(self.peft_config)}")
        merged = [n for n, m in adapter_modules(self.model) if adapter_name in getattr(m, "merged_adapters", ())]
        if merged:  # refuse before touching any layer, so a failed delete leaves the model whole
            raise MergeError(f"adapter {adapter_name!r} is merged into {merged[:3]}...; call unmerge_adapter() before deleting it")
        for name, module in reversed(list(adapter_modules(self.model))):  # innermost first: nested layers unwrap cleanly
            if adapter_name in module.adapter_names:
                module.delete_adapter(adapter_name)
            if not module.adapter_names:
                parent, child, _ = split_parent(self.model, name)
                setattr(parent, child, module.base_layer if isinstance(module, AdapterLayer) else module.original_module)
        del self.peft_config[adapter_name]
        if adapter_name in self.active_adapters:
            still_active = [n for n in self.active_adapters if n != adapter_name]
            remaining = list(self.peft_config)
            if still_active or remaining:
                self.set_adapter(still_active if len(still_active) > 1 else (still_active or remaining)[0])
            else:
                self.active_adapter = []

    def _set_disabled(self, disabled: bool) -> None:
        for _, module in adapter_modules(self.model):
            module.disabled = disabled

    def disable_adapter_layers(self) -> None:
        self._set_disabled(True)

    def enable_adapter_layers(self) -> None:
        self._set_disabled(False)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        previously = {id(m): m.disabled for _, m in adapter_modules(self.model)}
        self._set_disabled(True)
        try:
            yield
        finally:
            for _, m in adapter_modules(self.model):
                m.disabled = previously.get(id(m), False)

    # ------------------------------------------------------------------ method extensions

    def add_weighted_adapter(self, *args: Any, **kwargs: Any) -> None:
        """Combine adapters into a new one, for methods that support it (LoRA: see tuners/lora/combine.py)."""
        self._method_function("add_weighted_adapter")(self, *args, **kwargs)

    def update_and_allocate(self, global_step: int) -> None:
        """AdaLoRA's per-step rank budget update (see tuners/adalora/budget.py); call after backward."""
        self._method_function("update_and_allocate")(self, global_step)

    def _method_function(self, name: str) -> Any:
        config = next(iter(self.peft_config.values()))
        spec = spec_for_config(config)
        func = getattr(spec.layer_module, name, None)
        if func is None:
            raise UnsupportedLayerError(f"{name} is not available for {spec.peft_type.value} adapters")
        return func

    # ------------------------------------------------------------------ merging

    def _check_mergeable(self, adapter_names: list[str]) -> None:
        for name in adapter_names:
            if name not in self.peft_config:
                raise AdapterNotFoundError(f"no adapter named {name!r}; this model has {list(self.peft_config)}")
            spec = spec_for_config(self.peft_config[name])
            if not spec.can_merge:
                raise UnsupportedLayerError(f"{spec.peft_type.value} adapters cannot be merged into the base weights")

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Fold adapters into the base weights. With safe_merge every layer is checked before any is
        written, so NaN/inf in one layer leaves the whole model untouched."""
        names = self.active_adapters if adapter_names is None else list(adapter_names)
        self._check_mergeable(names)
        if safe_merge:
            for layer_name, layer in self.model.named_modules():
                if not isinstance(layer, AdapterLayer):
                    continue
                for name in names:
                    if name in layer.adapter_names and name not in layer.merged_adapters and not layer.merge_is_finite(name):
                        raise MergeError(
                            f"merging adapter {name!r} would put NaN or inf into {layer_name}; nothing was merged. "
                            "The adapter weights are corrupt (diverged training?): load a good checkpoint instead"
                        )
        for layer in self.adapter_layers():
            layer.merge([n for n in names if n in layer.adapter_names], safe_merge=safe_merge)

    def unmerge_adapter(self) -> None:
        for layer in self.adapter_layers():
            layer.unmerge()

    def _unload(self, merge: bool, safe_merge: bool = False, adapter_names: list[str] | None = None, dequantize: bool = False) -> nn.Module:
        if dequantize:
            self._dequantize_base_layers()
        if merge:
            self.merge_adapter(adapter_names, safe_merge=safe_merge)
        for name, module in reversed(list(adapter_modules(self.model))):  # innermost first: nested layers unwrap cleanly
            parent, child, _ = split_parent(self.model, name)
            if isinstance(module, AdapterLayer):
                setattr(parent, child, module.base_layer)
            elif isinstance(module, ModulesToSaveWrapper):
                setattr(parent, child, module.unwrap(module.active_adapter if merge else None))
            elif hasattr(module, "unwrap"):
                setattr(parent, child, module.unwrap(merge))
        self.peft_config.clear()
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config
        return self.model

    def _dequantize_base_layers(self) -> None:
        """Swap each quantized base layer under an adapter for a full-precision copy (view.dense_module)."""
        for layer in self.adapter_layers():
            if layer.view.quantized:
                if layer.merged_adapters:
                    layer.unmerge()
                dense = layer.view.dense_module()
                layer.base_layer = dense
                layer._view = view_for(dense)

    def merge_and_unload(
        self, progressbar: bool = False, safe_merge: bool = False, adapter_names: list[str] | None = None, dequantize: bool = False
    ) -> nn.Module:
        """Merge the active (or given) adapters into the weights and return the plain model.

        On a quantized base, merging re-quantizes (rounding); `dequantize=True` instead returns a
        full-precision model with the adapter merged exactly into the dequantized weights.
        """
        return self._unload(merge=True, safe_merge=safe_merge, adapter_names=adapter_names, dequantize=dequantize)

    def unload(self) -> nn.Module:
        """Remove every adapter without merging and return the original model."""
        return self._unload(merge=False)
