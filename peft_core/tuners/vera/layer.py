"""VeRA layers and the shared projections they read.

    y = base(x) + λb ⊙ (B[:out] (λd ⊙ (A[:, :in] dropout(x))))      x: (..., in) -> (..., out)
    delta = (λb ⊙ B[:out]) (λd ⊙ A[:, :in])                         (out, in), canonical layout

The projections live once per adapter in two `SharedProjection` modules on the tuner model
(`base_model.vera_A`, `base_model.vera_B`, so their checkpoint keys are peft's); layers keep a plain
reference, not a sub-module, so the tensors are neither duplicated nor saved per layer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...base_layers import view_for
from ...errors import ConfigError
from ...layer import AdapterLayer
from ...targeting import resolve_targets
from . import VeraConfig

if TYPE_CHECKING:
    from ...tuner_model import TunerModel


class SharedProjection(nn.Module):
    """One frozen projection per adapter (a buffer named after the adapter); saved only with save_projection."""

    holds_adapters = True

    def __init__(self):
        super().__init__()
        self.saved: dict[str, bool] = {}
        self.disabled = False

    @property
    def adapter_names(self) -> list[str]:
        return list(self.saved)

    @property
    def original_module(self) -> nn.Module:
        return self  # nothing to unwrap: the store stays on the tuner model, empty

    def add(self, adapter_name: str, tensor: torch.Tensor, save: bool) -> None:
        self.register_buffer(adapter_name, tensor, persistent=save)
        self.saved[adapter_name] = save

    def tensor(self, adapter_name: str) -> torch.Tensor:
        return self._buffers[adapter_name]

    def adapter_parameters(self, adapter_name: str) -> dict[str, torch.Tensor]:
        if not self.saved.get(adapter_name):
            return {}
        return {adapter_name: self._buffers[adapter_name]}  # key: the module's own name (adapter name removed)

    def set_requires_grad(self, adapter_name: str, requires_grad: bool) -> None:
        """Frozen by design: the projections are never trained."""

    def set_adapter(self, adapter_names: Any) -> None:
        """The projections of every adapter stay available; the layers pick the active ones."""

    def delete_adapter(self, adapter_name: str) -> None:
        self._buffers.pop(adapter_name, None)
        self.saved.pop(adapter_name, None)


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(-b, b) with b = sqrt(6 / fan_in), fan_in = shape[1]; drawn from `generator` (CPU)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def make_projections(r: int, in_max: int, out_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in_max), B (out_max, r)): A drawn first, then B, from one generator (peft's order)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    a = kaiming_uniform((r, in_max), generator)
    return a, kaiming_uniform((out_max, r), generator)


class VeraLinear(AdapterLayer):
    adapter_params = ("vera_lambda_b", "vera_lambda_d")
    adapter_settings = ("r", "dropout_p")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.vera_lambda_b = nn.ParameterDict()
        self.vera_lambda_d = nn.ParameterDict()
        self.__dict__["projections"] = None  # (vera_A store, vera_B store), set by the tuner model; not sub-modules

    def create_adapter(self, adapter_name: str, config: VeraConfig, tuner_model: Any = None, **_: Any) -> None:
        self.r[adapter_name] = config.r
        self.dropout_p[adapter_name] = config.vera_dropout
        if config.init_weights:
            self.vera_lambda_b[adapter_name] = nn.Parameter(torch.zeros(self.view.out_features))
            self.vera_lambda_d[adapter_name] = nn.Parameter(torch.full((config.r,), float(config.d_initial)))
        else:
            self.vera_lambda_b[adapter_name] = nn.Parameter(torch.ones(self.view.out_features))
            self.vera_lambda_d[adapter_name] = nn.Parameter(torch.randn(config.r))

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        for store in self.__dict__["projections"] or ():  # the shared stores are not visited by the tuner model
            store.delete_adapter(adapter_name)

    def _sliced(self, adapter_name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        store_a, store_b = self.__dict__["projections"]
        a = store_a.tensor(adapter_name)[:, : self.view.in_features]
        b = store_b.tensor(adapter_name)[: self.view.out_features, :]
        return a.to(like.device, like.dtype), b.to(like.device, like.dtype)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        lambda_d, lambda_b = self.vera_lambda_d[adapter_name], self.vera_lambda_b[adapter_name]
        a, b = self._sliced(adapter_name, lambda_d)
        x = x.to(lambda_d.dtype)
        p = self.dropout_p[adapter_name]
        if p > 0:
            x = F.dropout(x, p, self.training)
        update = lambda_b * F.linear(lambda_d * F.linear(x, a), b)
        return result + update.to(result.dtype)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        lambda_d, lambda_b = self.vera_lambda_d[adapter_name], self.vera_lambda_b[adapter_name]
        a, b = self._sliced(adapter_name, lambda_d)
        return (lambda_b.unsqueeze(-1) * b) @ (lambda_d.unsqueeze(-1) * a)


LAYER_CLASSES = {"linear": VeraLinear}


# ---------------------------------------------------------------------------------- model level


def _largest_shape(tuner_model: TunerModel, config: VeraConfig) -> tuple[int, int]:
    """(out, in): the largest dimensions over the linear layers this config targets."""
    out_max = in_max = 0
    for name in resolve_targets(config, tuner_model.model):
        module = tuner_model.model.get_submodule(name)
        view = module.view if isinstance(module, AdapterLayer) else view_for(module)
        if view is not None and view.kind in LAYER_CLASSES:
            out_max, in_max = max(out_max, view.out_features), max(in_max, view.in_features)
    if not out_max:
        raise ConfigError("VeraConfig", ["target_modules: no Linear or Conv1D layer matched; VeRA adapts only those"])
    return out_max, in_max


def before_inject(tuner_model: TunerModel, config: VeraConfig, adapter_name: str) -> None:
    """Check the new adapter agrees with the others, then create its shared projections."""
    problems = []
    for name, other in tuner_model.peft_config.items():
        if other.projection_prng_key != config.projection_prng_key:
            problems.append(f"projection_prng_key: adapter {name!r} uses {other.projection_prng_key}; every VeRA adapter of a model must use the same")
        if other.save_projection != config.save_projection:
            problems.append(f"save_projection: adapter {name!r} uses {other.save_projection}; save the projections for all adapters or none")
        if other.r != config.r:
            problems.append(f"r: adapter {name!r} uses r={other.r}; adapters sharing the projections need the same r")
    if problems:
        raise ConfigError("VeraConfig", problems)
    out_max, in_max = _largest_shape(tuner_model, config)
    existing = tuner_model._modules.get("vera_A")
    if existing is not None and existing.adapter_names:
        # as in peft, later adapters share the first one's tensors (same seed, so the same values)
        a, b = existing.tensor(existing.adapter_names[0]), tuner_model.vera_B.tensor(existing.adapter_names[0])
        if a.shape[1] < in_max or b.shape[0] < out_max:
            raise ConfigError(
                "VeraConfig",
                [f"target_modules: adapter {adapter_name!r} adapts layers up to ({out_max}, {in_max}) but the shared projections "
                 f"cover ({b.shape[0]}, {a.shape[1]}); add the adapter with the largest layers first"],
            )
    else:
        a, b = make_projections(config.r, in_max, out_max, config.projection_prng_key)
    for attr, tensor in (("vera_A", a), ("vera_B", b)):
        store = tuner_model._modules.get(attr)
        if store is None:
            store = SharedProjection()
            setattr(tuner_model, attr, store)
        store.add(adapter_name, tensor, config.save_projection)


def after_inject(tuner_model: TunerModel, config: VeraConfig, adapter_name: str) -> None:
    """Point every VeRA layer at the stores and move the new projections next to the adapted weights."""
    stores = (tuner_model.vera_A, tuner_model.vera_B)
    device = None
    for layer in tuner_model.adapter_layers():
        if isinstance(layer, VeraLinear):
            layer.__dict__["projections"] = stores
            device = device or layer.view.device
    for store in stores:
        tensor = store.tensor(adapter_name)
        if device is not None and tensor.device != device:
            moved = tensor.to(device)
            for name in store.adapter_names:  # keep one shared tensor
                if store.tensor(name) is tensor:
                    store.register_buffer(name, moved, persistent=store.saved[name])
