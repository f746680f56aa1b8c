"""AdaLoRA's rank allocator: importance of each singular value and the cubic budget schedule.

For every adapter tensor T (P, Λ, Q) with gradient g, per step:

    I = |T ⊙ g|,   Ī ← β1 Ī + (1−β1) I,   Ū ← β2 Ū + (1−β2) |I − Ī|,   s = Ī ⊙ Ū

The score of singular value i of a layer is s(Λ_i) + mean_j s(Q_ij) + mean_k s(P_ki). Between `tinit` and
`total_step − tfinal` the budget (kept singular values over all layers) falls from Σ init ranks to
target_r × layers as b(t) = (b0 − bT)(1 − (t − tinit)/(T − tfinal − tinit))³ + bT; every `deltaT` steps
the values scoring at or below the (b0 − b)-th smallest score are zeroed in Λ. The numbers, order of
operations and tie rule are peft 0.21.2's, so the same gradients give the same masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn


def layers_of(model: nn.Module, adapter_name: str) -> Iterator[tuple[str, Any]]:
    """(module name, AdaLoRA layer) for every layer holding this adapter, in model order."""
    from .layer import AdaLoraLayer

    for name, module in model.named_modules():
        if isinstance(module, AdaLoraLayer) and adapter_name in module.lora_E:
            yield name, module


def _grad(param: torch.Tensor) -> torch.Tensor:
    grad = param.grad if param.grad is not None else getattr(param, "adalora_grad", None)
    if grad is None:
        raise RuntimeError(
            "update_and_allocate: an AdaLoRA tensor has no gradient; call it after loss.backward() in each training step"
        )
    return grad


class RankAllocator:
    """Importance bookkeeping and budget masks for one trained adapter."""

    def __init__(self, model: nn.Module, adapter_name: str):
        self.adapter_name = adapter_name
        layers = list(layers_of(model, adapter_name))
        self.init_budget = sum(layer.lora_E[adapter_name].shape[0] for _, layer in layers)
        self.layer_count = len(layers)
        self.reset()

    def reset(self) -> None:
        self.avg_importance: dict[str, torch.Tensor] = {}
        self.avg_uncertainty: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ schedule

    def budget(self, config: Any, step: int) -> tuple[int, bool]:
        """(kept singular values at this step, whether to mask now)."""
        target = config.target_r * self.layer_count
        if step <= config.tinit:
            return self.init_budget, False
        if step > config.total_step - config.tfinal:
            return target, True
        remaining = 1 - (step - config.tinit) / (config.total_step - config.tfinal - config.tinit)
        return int((self.init_budget - target) * remaining**3 + target), step % config.deltaT == 0

    # ------------------------------------------------------------------ importance

    def _tensors(self, model: nn.Module) -> Iterator[tuple[str, str, torch.Tensor]]:
        for name, layer in layers_of(model, self.adapter_name):
            for part in ("lora_A", "lora_B", "lora_E"):
                yield name, part, layer.container(part)[self.adapter_name]

    def update_importance(self, model: nn.Module, config: Any) -> None:
        with torch.no_grad():
            for name, part, param in self._tensors(model):
                key = f"{name}.{part}"
                importance = (param * _grad(param)).abs()
                avg = self.avg_importance.get(key, torch.zeros_like(param))
                unc = self.avg_uncertainty.get(key, torch.zeros_like(param))
                avg = config.beta1 * avg + (1 - config.beta1) * importance
                self.avg_importance[key] = avg
                self.avg_uncertainty[key] = config.beta2 * unc + (1 - config.beta2) * (importance - avg).abs()
                param.adalora_grad = None

    def _scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Score per singular value, (r,), by layer name."""
        scores = {}
        for name, _ in layers_of(model, self.adapter_name):
            s = {part: self.avg_importance[f"{name}.{part}"] * self.avg_uncertainty[f"{name}.{part}"] for part in ("lora_A", "lora_B", "lora_E")}
            vectors = torch.cat([s["lora_A"].mean(dim=1, keepdim=True), s["lora_B"].mean(dim=0).view(-1, 1)], dim=1)
            scores[name] = s["lora_E"].view(-1) + vectors.sum(dim=1)
        return scores

    def mask_to_budget(self, model: nn.Module, budget: int) -> dict[str, list[bool]]:
        scores = self._scores(model)
        threshold = torch.kthvalue(torch.cat(list(scores.values())), k=self.init_budget - budget)[0].item()
        pattern = {}
        with torch.no_grad():
            for name, layer in layers_of(model, self.adapter_name):
                drop = scores[name] <= threshold
                layer.lora_E[self.adapter_name].masked_fill_(drop.view(-1, 1), 0.0)
                pattern[f"{name}.lora_E"] = (~drop).tolist()
        return pattern

    def apply_pattern(self, model: nn.Module, pattern: dict[str, list[bool]]) -> None:
        with torch.no_grad():
            for name, layer in layers_of(model, self.adapter_name):
                kept = pattern.get(f"{name}.lora_E")
                if kept is not None:
                    e = layer.lora_E[self.adapter_name]
                    e.masked_fill_(~torch.tensor(kept, dtype=torch.bool, device=e.device).view(-1, 1), 0.0)

    # ------------------------------------------------------------------ one step

    def step(self, model: nn.Module, config: Any, step: int) -> dict[str, list[bool]] | None:
        """The allocation for one optimizer step; returns a new rank_pattern when masks changed."""
        final = config.total_step - config.tfinal
        if step < final:
            self.update_importance(model, config)
            budget, now = self.budget(config, step)
            return self.mask_to_budget(model, budget) if now else None
        if step == final:
            budget, _ = self.budget(config, step)
            pattern = self.mask_to_budget(model, budget)
            self.reset()
            return pattern
        if config.rank_pattern:
            self.apply_pattern(model, config.rank_pattern)
        return None
