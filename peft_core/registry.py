"""The method registry: peft_type -> config class and layer classes.

A tuner module ends with one `register_method(...)` call. `peft_core.tuners` imports every module in
its package on first use, so adding a tuner means adding a file: no central list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .types import PeftType

if TYPE_CHECKING:
    import torch.nn as nn

    from .config import PeftConfig


@dataclass(frozen=True)
class MethodSpec:
    """What the framework needs to know about a method.

    `layers` names the module ("package.module") that holds the torch side of the method; it is
    imported only when a model is adapted, so listing methods and their config schemas (what the web
    process does) never imports torch. That module defines

        LAYER_CLASSES: dict[str, type]   view kind ("linear", "conv", "embedding", ...) -> layer class
        after_inject(tuner_model, config, adapter_name)   optional, for extra wrapping (e.g. tokens)
        before_inject(tuner_model, config, adapter_name)  optional, refusals/shared state before any layer
                                                          is injected (AdaLoRA: one trained adapter; VeRA: projections)
        saved_state_dict / loaded_state_dict(model, config, adapter_name, state)   optional, a reduced saved
                                                          form (AdaLoRA's kept ranks) and fitting it back
        add_weighted_adapter, update_and_allocate, extra_loss   optional model-level functions (TunerModel
                                                          and the studio's trainer look them up here)
        default_target_modules(model)   optional, targets computed from the model when `default_targets`
                                        has no entry (e.g. the input embedding's name)

    `default_targets` maps a transformers model_type to target module names; `field_defaults` does the
    same for other config fields left None (IA3's feedforward_modules), keyed by field name.
    """

    peft_type: PeftType
    config_cls: type[PeftConfig]
    prefix: str
    layers: str
    default_targets: dict[str, list[str] | str] = field(default_factory=dict)
    field_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    title: str = ""
    can_merge: bool = True

    @property
    def layer_module(self) -> Any:
        return importlib.import_module(self.layers)

    @property
    def layer_classes(self) -> dict[str, type[nn.Module]]:
        return self.layer_module.LAYER_CLASSES

    @property
    def after_inject(self) -> Any:
        return getattr(self.layer_module, "after_inject", None)


_METHODS: dict[str, MethodSpec] = {}
_discovered = False


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method; refuses names and prefixes that would collide, saying how to fix it."""
    name = spec.peft_type.value if isinstance(spec.peft_type, PeftType) else str(spec.peft_type)
    if name not in PeftType.__members__:
        raise ValueError(f"register_method: {name!r} is not a PeftType member; add it to peft_core/types.py first")
    if not re.fullmatch(r"[a-z0-9_]+_", spec.prefix):
        raise ValueError(f"register_method: prefix {spec.prefix!r} must be lower-case and end with '_', e.g. 'lora_'")
    if name in _METHODS and _METHODS[name] is not spec:
        raise ValueError(f"register_method: {name} is registered twice; remove one of the registrations")
    if spec.config_cls.peft_type != spec.peft_type:
        raise ValueError(f"register_method: {spec.config_cls.__name__}.peft_type is not {name}")
    _METHODS[name] = spec
    return spec


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    from . import tuners

    for info in pkgutil.iter_modules(tuners.__path__):
        importlib.import_module(f"{tuners.__name__}.{info.name}")


def get_method(peft_type: str | PeftType) -> MethodSpec:
    _discover()
    name = peft_type.value if isinstance(peft_type, PeftType) else str(peft_type).upper()
    if name not in _METHODS:
        known = ", ".join(sorted(_METHODS))
        raise ConfigError(
            "adapter config",
            [f"peft_type: {peft_type!r} is not a method peft_core implements (available: {known})"],
        )
    return _METHODS[name]


def registered_methods() -> dict[str, MethodSpec]:
    """All registered methods by peft_type name (what the studio lists)."""
    _discover()
    return dict(sorted(_METHODS.items()))


def spec_for_config(config: PeftConfig) -> MethodSpec:
    return get_method(config.peft_type)
