"""Combining IA3 adapters into a new one (`add_weighted_adapter`): a linear combination only, as in peft.

    l_new = sum_i w_i l_i     per layer, over the source adapters that adapt that layer

The new adapter targets the union of the sources' targets and feed-forward modules (regex strings are
OR-combined, lists united); a layer one source scales at its input and another at its output cannot be
combined, since the vectors would not even have the same length. The new adapter is not activated.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError

if TYPE_CHECKING:
    from . import IA3Config


def _union(values: list[Any], field: str) -> list[str] | str | None:
    """OR of regex strings, or the union of lists; mixing the two is refused (peft refuses it too)."""
    if all(isinstance(v, str) for v in values):
        return "|".join(f"(?:{v})" for v in dict.fromkeys(values))
    if any(isinstance(v, str) for v in values):
        raise ConfigError("add_weighted_adapter", [f"{field}: cannot combine adapters whose {field} mix regex strings and lists"])
    return sorted({m for v in values for m in (v or [])})


def _check(tuner: Any, adapters: list[str], weights: list[float], adapter_name: str) -> list[IA3Config]:
    problems = []
    missing = [a for a in adapters if a not in tuner.peft_config]
    if missing:
        problems.append(f"adapters: {missing} are not adapters of this model (it has {list(tuner.peft_config)})")
    if not adapters:
        problems.append("adapters: name at least one adapter to combine")
    if adapter_name in tuner.peft_config:
        problems.append(f"adapter_name: {adapter_name!r} already exists; pick a new name")
    if len(weights) != len(adapters):
        problems.append(f"weights: give one weight per adapter ({len(adapters)}), got {len(weights)}")
    if problems:
        raise ConfigError("add_weighted_adapter", problems)
    configs = [tuner.peft_config[a] for a in adapters]
    if sum(1 for c in configs if c.modules_to_save) > 1:
        raise ConfigError("add_weighted_adapter", ["adapters: more than one adapter trains modules_to_save copies; they cannot be combined"])
    return configs


def add_weighted_adapter(tuner: Any, adapters: list[str], weights: list[float], adapter_name: str) -> None:
    """Create adapter `adapter_name` whose vectors are the weighted sum of the sources' vectors."""
    configs = _check(tuner, adapters, weights, adapter_name)
    config = copy.deepcopy(configs[0])
    config.target_modules = _union([c.target_modules for c in configs], "target_modules")
    config.feedforward_modules = _union([c.feedforward_modules for c in configs], "feedforward_modules")
    config.modules_to_save = next((c.modules_to_save for c in configs if c.modules_to_save), None)
    config.init_ia3_weights = True
    active = tuner.active_adapter
    tuner.inject_adapter(config, adapter_name)
    conflicts = []
    for layer in tuner.adapter_layers():
        if adapter_name not in layer.adapter_names:
            continue
        sources = [(n, w) for n, w in zip(adapters, weights) if n in layer.adapter_names]
        if any(layer.is_feedforward[n] != layer.is_feedforward[adapter_name] for n, _ in sources):
            conflicts.append(layer)
            continue
        target = layer.ia3_l[adapter_name]
        with torch.no_grad():
            target.zero_()
            for name, weight in sources:
                target.add_(layer.ia3_l[name].to(target.dtype) * weight)
    if conflicts:
        tuner.delete_adapter(adapter_name)
        raise ConfigError(
            "add_weighted_adapter",
            ["feedforward_modules: a layer is scaled at its input by one adapter and at its output by another; "
             "only adapters that agree on feedforward_modules can be combined"],
        )
    tuner.set_adapter(active)
