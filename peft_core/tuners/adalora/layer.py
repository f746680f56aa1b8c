"""AdaLoRA layers: the SVD-form update and the model-level pieces peft keeps on AdaLoraModel.

    Linear/Conv1D   delta = P (Λ ⊙ Q) * scaling / (ranknum + 1e-5)                 (out, in)
    ConvNd          the same with Q: (r, in * prod(kernel)), reshaped to the kernel  (out, in, *k)

    lora_A = Q (r, in[*k]),  lora_E = Λ (r, 1),  lora_B = P (out, r)   plain Parameters, saved without `.weight`
    scaling = lora_alpha (or r when lora_alpha is 0), ranknum = init_r (not saved: always recomputed)

Masked singular values are zeros in Λ, so a masked rank costs compute but changes nothing. Model-level
extensions found by the tuner model: `before_inject` (one trainable adapter), `after_inject` (the rank
allocator and peft's loss hook), `update_and_allocate`, `extra_loss` and `saved_state_dict` (slices the
saved tensors to the kept ranks).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError, UnsupportedLayerError
from ...layer import AdapterLayer
from . import AdaLoraConfig
from .budget import RankAllocator, layers_of

if TYPE_CHECKING:
    from ...tuner_model import TunerModel

RANKNUM_EPS = 1e-5  # peft divides by ranknum + 1e-5; kept so outputs agree to the last bit


def _keep_grad(param: torch.Tensor) -> None:
    """Remember the latest gradient: the studio's loop clears gradients before its per-step hook runs."""
    param.adalora_grad = param.grad


class AdaLoraLayer(AdapterLayer):
    adapter_params = ("lora_A", "lora_B", "lora_E")
    adapter_settings = ("r", "lora_alpha", "scaling", "ranknum", "dropout_p")

    def __init__(self, base_layer: nn.Module, view: Any):
        super().__init__(base_layer, view)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.lora_E = nn.ParameterDict()

    def create_adapter(self, adapter_name: str, config: AdaLoraConfig, target_name: str = "", **_: Any) -> None:
        r = config.init_r
        kept = (config.rank_pattern or {}).get(f"{target_name}.lora_E")
        if kept is not None:  # a checkpoint saved after allocation holds only the kept singular values
            r = sum(bool(v) for v in kept)
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = config.lora_alpha
        self.scaling[adapter_name] = config.lora_alpha if config.lora_alpha > 0 else float(r)
        self.ranknum[adapter_name] = float(config.init_r)
        self.dropout_p[adapter_name] = config.lora_dropout
        fan_in = math.prod(self.view.weight_shape[1:])
        if config.init_lora_weights:
            self.lora_A[adapter_name] = nn.Parameter(torch.randn(r, fan_in) * 0.02)
            self.lora_E[adapter_name] = nn.Parameter(torch.zeros(r, 1))
            self.lora_B[adapter_name] = nn.Parameter(torch.randn(self.view.out_features, r) * 0.02)
        else:
            self.lora_A[adapter_name] = nn.Parameter(torch.randn(r, fan_in))
            self.lora_E[adapter_name] = nn.Parameter(torch.randn(r, 1))
            self.lora_B[adapter_name] = nn.Parameter(torch.randn(self.view.out_features, r))
        if not config.inference_mode:
            for name in self.adapter_params:
                self.container(name)[adapter_name].register_post_accumulate_grad_hook(_keep_grad)

    def factor(self, adapter_name: str) -> torch.Tensor:
        """Λ ⊙ Q: (r, fan_in)."""
        return self.lora_A[adapter_name] * self.lora_E[adapter_name]

    def scale(self, adapter_name: str) -> float:
        return self.scaling[adapter_name] / (self.ranknum[adapter_name] + RANKNUM_EPS)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        delta = self.lora_B[adapter_name] @ self.factor(adapter_name) * self.scale(adapter_name)
        return delta.reshape(self.view.weight_shape)

    def dropout(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout_p[adapter_name]
        return F.dropout(x, p, self.training) if p > 0 else x


class SVDLinear(AdaLoraLayer):
    """x: (..., in) -> (..., out)."""

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        a = self.lora_A[adapter_name]
        x = self.dropout(adapter_name, x.to(a.dtype))
        update = (x @ self.factor(adapter_name).T @ self.lora_B[adapter_name].T) * self.scale(adapter_name)
        return result + update.to(result.dtype)


class SVDConv(AdaLoraLayer):
    """x: (N, in, *S) -> (N, out, *S'); the update runs as one convolution with the delta kernel."""

    def __init__(self, base_layer: nn.Module, view: Any):
        if base_layer.groups != 1:
            raise UnsupportedLayerError(f"AdaLoRA on grouped convolutions (groups={base_layer.groups}) is not supported")
        super().__init__(base_layer, view)

    def adapter_forward(self, adapter_name: str, x: torch.Tensor, result: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        a = self.lora_A[adapter_name]
        x = self.dropout(adapter_name, x.to(a.dtype))
        update = self.view.apply_weight(x, self.delta_weight(adapter_name))
        return result + update.to(result.dtype)


LAYER_CLASSES = {"linear": SVDLinear, "conv": SVDConv}


# ---------------------------------------------------------------------------------- model level


def trainable_adapter(tuner_model: TunerModel) -> str | None:
    """The one adapter being trained (AdaLoRA allows one; the others are inference-only)."""
    names = [n for n, c in tuner_model.peft_config.items() if not c.inference_mode]
    return names[0] if names else None


def before_inject(tuner_model: TunerModel, config: AdaLoraConfig, adapter_name: str) -> None:
    """Refuse a second trainable adapter before anything is injected (the budget is per adapter)."""
    trainable = trainable_adapter(tuner_model)
    if trainable is not None and not config.inference_mode:
        raise ConfigError(
            "AdaLoraConfig",
            [f"inference_mode: adapter {trainable!r} is already being trained and AdaLoRA trains one adapter at a time; "
             f"add {adapter_name!r} with inference_mode=True"],
        )


def after_inject(tuner_model: TunerModel, config: AdaLoraConfig, adapter_name: str) -> None:
    if not config.inference_mode:
        tuner_model.rank_allocator = RankAllocator(tuner_model.model, adapter_name)
    if not getattr(tuner_model, "_adalora_loss_hook", False):
        tuner_model.register_forward_hook(_add_regularization)
        tuner_model._adalora_loss_hook = True


def orthogonal_regularization(tuner_model: TunerModel) -> torch.Tensor | None:
    """Mean over the trained adapter's P and Q of ||PᵀP − I||_F and ||QQᵀ − I||_F (None when nothing trains)."""
    name = trainable_adapter(tuner_model)
    if name is None:
        return None
    terms = []
    for _, layer in layers_of(tuner_model.model, name):
        a, b = layer.lora_A[name], layer.lora_B[name]
        for cov in (a @ a.T, b.T @ b):
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
    return torch.stack(terms).mean() if terms else None


def extra_loss(tuner_model: TunerModel) -> torch.Tensor | None:
    """orth_reg_weight × the orthogonal regulariser: what a trainer computing its own loss must add."""
    name = trainable_adapter(tuner_model)
    reg = orthogonal_regularization(tuner_model)
    if reg is None:
        return None
    return tuner_model.peft_config[name].orth_reg_weight * reg


def _add_regularization(module: nn.Module, args: Any, output: Any) -> Any:
    """As peft does: when the model returns a loss (labels given), the regulariser is already in it."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and module.training:
        extra = extra_loss(module)
        if extra is not None:
            output.loss = loss + extra.to(loss.dtype)
    return output


def update_and_allocate(tuner_model: TunerModel, global_step: int) -> None:
    """Update importance scores and mask singular values to the step's budget; call once per optimizer
    step, after backward (the gradients are read) — before or after zero_grad, the last gradient is kept."""
    name = trainable_adapter(tuner_model)
    allocator = getattr(tuner_model, "rank_allocator", None)
    if name is None or allocator is None:
        raise ConfigError("AdaLoraConfig", ["inference_mode: no AdaLoRA adapter is being trained, so there is no rank budget to update"])
    config = tuner_model.peft_config[name]
    if config.total_step is None:
        raise ConfigError("AdaLoraConfig", ["total_step: not set; give the number of training steps the rank schedule spans"])
    pattern = allocator.step(tuner_model.model, config, global_step)
    if pattern is not None:
        config.rank_pattern = pattern


def saved_state_dict(model: nn.Module, config: AdaLoraConfig, adapter_name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Slice lora_A/E rows and lora_B columns to the singular values rank_pattern keeps (peft's saved form)."""
    if not config.rank_pattern:
        return state
    out = dict(state)
    for key, value in state.items():
        if not key.endswith(".lora_E"):
            continue
        stem = key[: -len(".lora_E")]
        kept = config.rank_pattern.get(stem.removeprefix("base_model.model.") + ".lora_E")
        if kept is None or sum(bool(v) for v in kept) == value.shape[0] or len(kept) != value.shape[0]:
            continue
        idx = torch.tensor([bool(v) for v in kept], device=value.device)
        out[key] = value[idx]
        out[f"{stem}.lora_A"] = state[f"{stem}.lora_A"][idx]
        out[f"{stem}.lora_B"] = state[f"{stem}.lora_B"][:, idx]
    return out


def loaded_state_dict(model: nn.Module, config: AdaLoraConfig, adapter_name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fit a checkpoint saved after allocation (only the kept ranks) into full-rank layers: resuming a run.

    The update Σ_i P_i Λ_i Q_i does not depend on the order of its terms, so the k kept triplets go to the
    first k ranks and the others stay masked (Λ = 0); rank_pattern records that layout, so later masks and
    the final save follow it. A model built from the checkpoint's own config already has the reduced
    ranks and needs nothing here.
    """
    from ...checkpoint import PEFT_PREFIX, adapter_tensor_map

    live = adapter_tensor_map(model, adapter_name, save_embedding_layers=False)
    out = dict(state)
    pattern: dict[str, list[bool]] = {}
    for key, value in state.items():
        if not key.endswith(".lora_E"):
            continue
        live_key = key if key in live else PEFT_PREFIX + key if PEFT_PREFIX + key in live else key.removeprefix(PEFT_PREFIX)
        target = live.get(live_key)
        stem, live_stem = key[: -len(".lora_E")], live_key[: -len(".lora_E")]
        if target is None or value.shape[0] >= target.shape[0] or f"{stem}.lora_A" not in state or f"{stem}.lora_B" not in state:
            continue
        kept, full = value.shape[0], target.shape[0]
        e = torch.zeros_like(target)
        e[:kept] = value.to(e)
        a = live[f"{live_stem}.lora_A"].detach().clone()
        a[:kept] = state[f"{stem}.lora_A"].to(a)
        b = live[f"{live_stem}.lora_B"].detach().clone()
        b[:, :kept] = state[f"{stem}.lora_B"].to(b)
        out[key], out[f"{stem}.lora_A"], out[f"{stem}.lora_B"] = e, a, b
        pattern[f"{live_stem.removeprefix(PEFT_PREFIX)}.lora_E"] = [True] * kept + [False] * (full - kept)
    if pattern:
        config.rank_pattern = {**(config.rank_pattern or {}), **pattern}
    return out
