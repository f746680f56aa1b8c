"""LoRA on raw parameters (`target_parameters`): MoE expert tensors and other weights no Linear owns.

A parameter W of E experts is (E, out, in), or (E, in, out) when its module says `is_transposed`
(transformers' fused experts, e.g. GPT-OSS); a 2-D parameter is one expert (out, in). With rank r:

    lora_A  nn.Linear(in, r*E)    weight (r*E, in)   A_e = A.view(E, r, in)[e]         (expert-major rows)
    lora_B  nn.Linear(r*E, out)   weight (out, r*E)  B_e = B.view(out, r, E)[:, :, e]  (expert-minor columns)
    delta_e = s * B_e @ A_e   (transposed back for is_transposed),   W' = W + delta

These layouts are peft's (ParamWrapper), so checkpoints move both ways. The layer wraps the module
that owns W and runs that module's own forward with W' substituted (torch.func.functional_call): the
routing and activations of the experts are untouched, and gradients reach A and B through W'. A second
parameter of the same module nests a second wrapper (its keys gain `.base_layer.`), innermost first in
the module's parameter order, as peft does. Dropout, DoRA and lora_bias do not apply (the config refuses
them): there is no single input to drop out and no per-output norm or bias on an expert tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.func import functional_call

from ...base_layers import BaseLayerView
from ...errors import ConfigError, UnsupportedLayerError
from ...layer import AdapterLayer
from ...tuner_model import split_parent
from .layer import LoraLayer

if TYPE_CHECKING:
    from ...tuner_model import TunerModel
    from .config import LoraConfig


class ParameterView(BaseLayerView):
    """One parameter of a module, seen as a (stack of) linear weight(s) in its stored layout."""

    kind = "parameter"

    def __init__(self, module: nn.Module, param_name: str):
        super().__init__(module)
        self.param_name = param_name
        shape = self.parameter.shape
        if len(shape) not in (2, 3):
            raise UnsupportedLayerError(
                f"target_parameters: {param_name!r} of {type(module).__name__} has shape {tuple(shape)}; "
                "only 2-D (out, in) and 3-D (experts, out, in) weights can carry LoRA"
            )

    @property
    def parameter(self) -> nn.Parameter:
        return self.module._parameters[self.param_name]

    @property
    def transposed(self) -> bool:
        """transformers marks expert tensors stored (E, in, out) with `is_transposed`."""
        return bool(getattr(self.module, "is_transposed", False))

    @property
    def num_experts(self) -> int:
        return self.parameter.shape[0] if self.parameter.ndim == 3 else 1

    @property
    def in_features(self) -> int:
        return self.parameter.shape[-2] if self.transposed else self.parameter.shape[-1]

    @property
    def out_features(self) -> int:
        return self.parameter.shape[-1] if self.transposed else self.parameter.shape[-2]

    @property
    def device(self) -> torch.device:
        return self.parameter.device

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.parameter.dtype

    def get_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        w = self.parameter.detach()
        return w if dtype is None else w.to(dtype)

    def set_weight(self, weight: torch.Tensor) -> None:
        self.parameter.data.copy_(weight.to(self.parameter.dtype))

    @property
    def bias(self) -> None:
        return None

    def set_bias(self, bias: torch.Tensor) -> None:
        raise UnsupportedLayerError("a LoRA on a raw parameter has no bias to merge into")


class LoraParameter(LoraLayer):
    """LoRA on one parameter of the wrapped module (which may itself be a LoraParameter)."""

    adapter_params = ("lora_A", "lora_B")

    def __init__(self, base_layer: nn.Module, view: ParameterView):
        super().__init__(base_layer, view)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()

    @property
    def param_path(self) -> str:
        """The parameter's name as seen from `base_layer` (through any nested wrappers, which may go away)."""
        depth, inner = 0, self.base_layer
        while isinstance(inner, LoraParameter):
            depth, inner = depth + 1, inner.base_layer
        return "base_layer." * depth + self.view.param_name

    @property
    def view(self) -> ParameterView:
        return self._view

    def create_tensors(self, adapter_name: str, r: int, lora_bias: bool) -> None:
        experts = self.view.num_experts
        self.lora_A[adapter_name] = nn.Linear(self.view.in_features, r * experts, bias=False)
        self.lora_B[adapter_name] = nn.Linear(r * experts, self.view.out_features, bias=False)

    def lora_weight(self, adapter_name: str) -> torch.Tensor:
        """B_e @ A_e for every expert, in the parameter's stored layout, without scaling."""
        experts, r = self.view.num_experts, self.r[adapter_name]
        a = self.lora_A[adapter_name].weight.view(experts, r, -1)
        b = self.lora_B[adapter_name].weight.view(-1, r, experts).permute(2, 0, 1)
        delta = torch.bmm(b, a)  # (E, out, in)
        if self.view.transposed:
            delta = delta.transpose(1, 2)
        return delta if self.view.parameter.ndim == 3 else delta[0]

    def base_forward(self, adapter_names: list[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The owner's own forward with W + the active adapters' deltas in place of W."""
        weight = self.view.parameter
        for name in adapter_names:
            weight = weight + self.delta_weight(name).to(weight.dtype)
        return functional_call(self.base_layer, {self.param_path: weight}, (x, *args), kwargs)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return result  # the update already acted inside base_forward


# ---------------------------------------------------------------------- injection


def _owners(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(logical name, module) for every plain module; adapter layers are looked through to their base,
    so names stay the user's ('experts', not 'experts.base_layer') and adapter tensors are never owners."""
    if isinstance(module, AdapterLayer):
        yield from _owners(module.base_layer, prefix)
        return
    yield prefix, module
    for child_name, child in module.named_children():
        yield from _owners(child, f"{prefix}.{child_name}" if prefix else child_name)


def find_target_parameters(model: nn.Module, wanted: list[str], config_name: str) -> list[tuple[str, str]]:
    """(module name, parameter name) pairs whose full name equals or ends with '.' + an entry, in the
    model's parameter order; raises naming every entry that matched nothing."""
    found: list[tuple[str, str]] = []
    used: set[str] = set()
    sample: list[str] = []
    for module_name, module in _owners(model):
        for pname, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            if param.ndim in (2, 3) and len(sample) < 20:
                sample.append(full)
            hits = [t for t in wanted if full == t or full.endswith("." + t)]
            if hits:
                found.append((module_name, pname))
                used.update(hits)
    missing = [t for t in wanted if t not in used]
    if missing:
        raise ConfigError(
            config_name,
            [f"target_parameters: {missing} matched no parameter; give parameter names (or dotted suffixes), "
             f"e.g. 'mlp.experts.gate_up_proj'. Weights in this model include: {', '.join(sample)}"],
        )
    return found


def add_parameter_adapters(tuner_model: TunerModel, config: LoraConfig, adapter_name: str) -> None:
    """Wrap the owner of each targeted parameter (nesting for several on one module) and add the adapter."""
    if not config.target_parameters:
        return
    model = tuner_model.model
    for module_name, pname in find_target_parameters(model, list(config.target_parameters), type(config).__name__):
        full = f"{module_name}.{pname}" if module_name else pname
        parent, child, outer = split_parent(model, module_name)
        layer = outer
        while isinstance(layer, LoraParameter) and layer.view.param_name != pname:
            layer = layer.base_layer
        if isinstance(layer, LoraParameter):
            layer.add_adapter(adapter_name, config, target_name=full)
            continue
        if isinstance(layer, AdapterLayer):
            raise UnsupportedLayerError(
                f"target_parameters: {full!r} belongs to {module_name!r}, which target_modules already adapts; "
                "list it in target_modules or in target_parameters, not both"
            )
        owner = outer
        while isinstance(owner, LoraParameter):
            owner = owner.base_layer
        wrapper = LoraParameter(outer, ParameterView(owner, pname))
        wrapper.add_adapter(adapter_name, config, target_name=full)
        setattr(parent, child, wrapper)
