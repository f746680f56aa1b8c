"""Combining LoRA adapters into a new one (`add_weighted_adapter`).

Each source adapter i enters with weight w_i and its own scaling s_i; the new adapter gets
lora_alpha = r, so its scaling is 1.

    cat             A = [sqrt(w_i s_i) A_i] stacked on the rank axis, B likewise: exactly sum_i w_i s_i B_i A_i
    linear          A = sum_i sqrt(w_i s_i) A_i, B = sum_i sqrt(w_i s_i) B_i (same ranks; cross terms included)
    svd             best rank-k approximation (SVD) of sum_i w_i s_i B_i A_i, k = svd_rank or the largest rank
    magnitude_prune per matrix: keep the `density` share of largest entries of each A_i (B_i), weighted sum
    ties            TIES-merging (Yadav et al. 2023, arXiv 2306.01708) per matrix: prune by magnitude, elect
                    each entry's sign from the pruned values, average the weighted values that agree
    dare_linear     DARE (Yu et al. 2023, arXiv 2311.03099): drop entries at random with probability
                    1 - density, rescale by 1 / density, weighted sum
    dare_ties       DARE's random pruning followed by TIES' sign election and disjoint mean

A negative weight flips the sign of A's contribution (B takes sqrt(|w s|)), so "subtracting" an adapter
works for the additive combinations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from ...errors import ConfigError

if TYPE_CHECKING:
    from .config import LoraConfig
    from .layer import LoraLayer

COMBINATIONS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")


# ---------------------------------------------------------------------------------------------- pure helpers


def prune_by_magnitude(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the `density` share of entries with the largest magnitude."""
    keep = int(density * tensor.numel())
    mask = torch.zeros(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
    if keep > 0:
        mask[tensor.abs().flatten().topk(keep).indices] = 1
    return tensor * mask.view_as(tensor)


def prune_at_random(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """DARE: keep each entry with probability `density`, rescaled so the expectation is unchanged."""
    mask = torch.bernoulli(torch.full_like(tensor, density))
    return tensor * mask / density


def elect_sign(tensors: torch.Tensor, method: str) -> torch.Tensor:
    """Per-entry sign: of the sum ("total") or of the majority of signs ("frequency")."""
    votes = tensors.sign() if method == "frequency" else tensors
    sign = votes.sum(dim=0).sign()
    return torch.where(sign == 0, torch.ones_like(sign), sign)


def disjoint_mean(tensors: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    agree = tensors.sign() == sign
    weighted = tensors * weights.view(-1, *([1] * (tensors.dim() - 1)))
    return (weighted * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1)


def merge_task_tensors(
    tensors: Sequence[torch.Tensor], weights: Sequence[float], how: str, density: float, sign_method: str
) -> torch.Tensor:
    w = torch.tensor(list(weights), dtype=tensors[0].dtype, device=tensors[0].device)
    if how == "linear":
        return sum(wi * t for wi, t in zip(w, tensors))
    if how == "magnitude_prune":
        return sum(wi * prune_by_magnitude(t, density) for wi, t in zip(w, tensors))
    if how == "dare_linear":
        return sum(wi * prune_at_random(t, density) for wi, t in zip(w, tensors))
    prune: Callable[[torch.Tensor, float], torch.Tensor] = prune_by_magnitude if how == "ties" else prune_at_random
    stacked = torch.stack([prune(t, density) for t in tensors])
    return disjoint_mean(stacked, w, elect_sign(stacked, sign_method))


# ---------------------------------------------------------------------------------------------- per layer


def _factors(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A as (r, in, ...) and B as (out, r, ...), the storage of this layer kind."""
    if hasattr(layer, "lora_embedding_A"):
        return layer.lora_embedding_A[name], layer.lora_embedding_B[name]
    return layer.lora_A[name].weight, layer.lora_B[name].weight


def _combine_layer(layer: LoraLayer, sources: list[str], weights: list[float], target: str, how: str, opts: dict) -> None:
    scaled = [math.sqrt(abs(w * layer.scaling[n])) for n, w in zip(sources, weights)]
    signs = [math.copysign(1.0, w) for w in weights]
    new_a, new_b = _factors(layer, target)
    pairs = [(_factors(layer, n)) for n in sources]
    with torch.no_grad():
        if how == "cat":  # rows of every source at its offset; sources this layer lacks stay zero
            for (a, b), sc, sg, start in zip(pairs, scaled, signs, opts["offsets"]):
                new_a[start : start + a.shape[0]] = sg * sc * a.detach()
                new_b[:, start : start + a.shape[0]] = sc * b.detach()
            return
        if how == "svd":
            delta = sum(w * layer.scaling[n] * layer.lora_weight(n).detach().float() for n, w in zip(sources, weights))
            a, b = _svd_factors(layer, delta, new_a.shape[0], opts.get("svd_clamp"), opts.get("svd_full_matrices", True))
        else:
            a = merge_task_tensors([a.detach() for a, _ in pairs], [sg * sc for sc, sg in zip(scaled, signs)], how, opts["density"], opts["sign"])
            b = merge_task_tensors([b.detach() for _, b in pairs], scaled, how, opts["density"], opts["sign"])
        new_a.copy_(a.reshape(new_a.shape))
        new_b.copy_(b.reshape(new_b.shape))


def _svd_factors(layer: LoraLayer, delta: torch.Tensor, rank: int, clamp: float | None, full: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in...) and B (out, r) with B @ A the best rank-r approximation of `delta` (canonical layout)."""
    kind = layer.view.kind
    matrix = delta.T if kind == "embedding" else delta.flatten(1)  # (out, in...) in the factors' layout
    u, s, vh = torch.linalg.svd(matrix, full_matrices=full)
    u, vh = u[:, :rank] * s[:rank], vh[:rank]
    if clamp is not None:
        limit = torch.quantile(torch.cat([u.flatten(), vh.flatten()]), clamp)
        u, vh = u.clamp(-limit, limit), vh.clamp(-limit, limit)
    if kind == "conv":
        vh = vh.reshape(rank, *delta.shape[1:])
        u = u.reshape(u.shape[0], rank, *([1] * (delta.dim() - 2)))
    return vh, u


# ---------------------------------------------------------------------------------------------- model level


def _combined_targets(configs: list[LoraConfig]) -> list[str] | str:
    targets = [c.target_modules for c in configs]
    if all(isinstance(t, str) for t in targets):
        return "|".join(f"(?:{t})" for t in dict.fromkeys(targets))
    if any(isinstance(t, str) for t in targets):
        raise ConfigError("add_weighted_adapter", ["target_modules: cannot combine adapters whose targets mix regex strings and lists"])
    return sorted({m for t in targets for m in t})


def add_weighted_adapter(
    tuner,
    adapters: list[str],
    weights: list[float],
    adapter_name: str,
    combination_type: str = "svd",
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    svd_full_matrices: bool = True,
    density: float | None = None,
    majority_sign_method: str = "total",
) -> None:
    """Create adapter `adapter_name` from `adapters` (see the module docstring for the combinations)."""
    problems = []
    missing = [a for a in adapters if a not in tuner.peft_config]
    if missing:
        problems.append(f"adapters: {missing} are not adapters of this model (it has {list(tuner.peft_config)})")
    if adapter_name in tuner.peft_config:
        problems.append(f"adapter_name: {adapter_name!r} already exists")
    if len(weights) != len(adapters):
        problems.append(f"weights: give one weight per adapter ({len(adapters)}), got {len(weights)}")
    if combination_type not in COMBINATIONS:
        problems.append(f"combination_type: {combination_type!r} is not one of {', '.join(COMBINATIONS)}")
    if combination_type in ("ties", "dare_linear", "dare_ties", "magnitude_prune") and not (density is not None and 0 < density <= 1):
        problems.append(f"density: {combination_type} needs a density in (0, 1], got {density!r}")
    if majority_sign_method not in ("total", "frequency"):
        problems.append("majority_sign_method: use 'total' or 'frequency'")
    if problems:
        raise ConfigError("add_weighted_adapter", problems)
    configs = [tuner.peft_config[a] for a in adapters]
    if any(c.use_dora or c.target_parameters or c.trainable_token_indices for c in configs):
        raise ConfigError("add_weighted_adapter", ["adapters: DoRA, target_parameters and trainable_token_indices adapters cannot be combined"])
    if sum(1 for c in configs if c.modules_to_save) > 1:
        raise ConfigError("add_weighted_adapter", ["adapters: more than one adapter trains modules_to_save copies; they cannot be combined"])
    if len(adapters) == 1:
        combination_type = "linear"
    ranks = {c.r for c in configs} | {r for c in configs for r in c.rank_pattern.values()}
    if combination_type in ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune") and len(ranks) > 1:
        raise ConfigError("add_weighted_adapter", [f"combination_type: {combination_type} needs equal ranks, got {sorted(ranks)}; use 'cat' or 'svd'"])
    if combination_type == "cat":
        new_r = sum(c.r for c in configs)
    elif combination_type == "svd":
        new_r = svd_rank or max(c.r for c in configs)
    else:
        new_r = configs[0].r
    config = copy.deepcopy(configs[0])
    config.r, config.lora_alpha = new_r, new_r
    config.rank_pattern, config.alpha_pattern = {}, {}
    config.init_lora_weights = True
    config.target_modules = _combined_targets(configs)
    config.modules_to_save = next((c.modules_to_save for c in configs if c.modules_to_save), None)
    if combination_type == "cat" and any(c.rank_pattern for c in configs):
        raise ConfigError("add_weighted_adapter", ["combination_type: 'cat' with rank_pattern adapters is not supported; use 'svd'"])
    active = tuner.active_adapter
    tuner.inject_adapter(config, adapter_name)
    opts = {"density": density, "sign": majority_sign_method, "svd_clamp": svd_clamp, "svd_full_matrices": svd_full_matrices}
    for layer in tuner.adapter_layers():
        if adapter_name not in layer.adapter_names:
            continue
        present = [(n, w) for n, w in zip(adapters, weights) if n in layer.adapter_names]
        offsets = [sum(c.r for c in configs[:i]) for i, n in enumerate(adapters) if n in layer.adapter_names]
        opts["offsets"] = offsets
        new_a, new_b = _factors(layer, adapter_name)
        with torch.no_grad():
            new_a.zero_()
            new_b.zero_()
        if present:
            _combine_layer(layer, [n for n, _ in present], [w for _, w in present], adapter_name, combination_type, opts)
    tuner.set_adapter(active)
