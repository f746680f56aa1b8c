"""A rough pre-flight summary of a run, computed without torch: trainable parameters, steps, memory.

Why: people want to know before pressing Start whether a run fits their GPU and how long it is
(the #3 complaint about other studios is an OOM with no warning). Everything here is arithmetic on
the model's shape (app.services.catalog) and the job spec, so it is labelled "rough":

- trainable parameters = a sum over the targeted linear layers: LoRA r * (in + out) (+ out for DoRA's
  magnitude), LoHa 2 * r * (in + out), IA3 one vector (out, or in for feed-forward layers); other
  methods are not counted yet (the summary says so);
- steps = ceil(training rows / (batch * accumulation)) * epochs, or max_steps;
- memory = frozen weights at the training precision + adapter weights, gradients and AdamW states
  (fp32, 16 bytes per trainable parameter) + activations (about 34 * hidden bytes per token per
  layer at 16-bit, after Korthikanti et al. 2022; far less with gradient checkpointing) + fp32 logits
  + a fixed framework overhead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.services.catalog import Architecture, resolve_architecture
from peft_core.registry import registered_methods

GIB = 2**30
OVERHEAD_BYTES = int(0.6 * GIB)  # CUDA context, allocator slack, kernels
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "auto": 2}
_TRAINABLE_STATE_BYTES = 16  # fp32 weight + fp32 grad + two fp32 AdamW moments


@dataclass
class RunEstimate:
    """Numbers for the summary box; None where they cannot be known before the run."""

    total_params: int | None = None
    trainable_params: int | None = None
    targeted_layers: int | None = None
    train_rows: int | None = None
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    weights_bytes: int | None = None
    adapter_state_bytes: int | None = None
    activation_bytes: int | None = None
    total_bytes: int | None = None
    model_source: str = ""
    notes: list[str] = field(default_factory=list)


def _matches(name: str, spec: list[str] | str) -> bool:
    """peft_core's targeting rule: a list entry matches the full name or a dotted suffix; a string is a full-match regex."""
    if isinstance(spec, str):
        try:
            return re.fullmatch(spec, name) is not None
        except re.error:
            return False
    return any(name == entry or name.endswith("." + entry) for entry in spec)


def _targeted(arch: Architecture, method: dict[str, Any]) -> list[tuple[str, int, int]]:
    targets = method.get("target_modules")
    if targets is None:
        spec = registered_methods().get(str(method.get("peft_type", "LORA")).upper())
        defaults = spec.default_targets if spec else {}
        targets = defaults.get(arch.model_type) or defaults.get("llama") or ["q_proj", "v_proj"]
    modules = arch.linear_modules()
    chosen = modules if targets == "all-linear" else [m for m in modules if _matches(m[0], targets)]
    exclude = method.get("exclude_modules")
    if exclude:
        chosen = [m for m in chosen if not _matches(m[0], exclude)]
    return chosen


def _rank_for(name: str, r: int, pattern: dict[str, Any]) -> int:
    for key, value in (pattern or {}).items():
        if _matches(name, [key]) or _matches(name, key):
            return int(value)
    return r


def _low_rank(factor: int) -> Callable[[dict[str, Any], str, int, int], int | None]:
    def count(method: dict[str, Any], name: str, fan_in: int, fan_out: int) -> int | None:
        r = method.get("r")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            return None
        pattern = method.get("rank_pattern") if isinstance(method.get("rank_pattern"), dict) else {}
        extra = fan_out if method.get("use_dora") else 0
        extra += fan_out if method.get("lora_bias") else 0
        return factor * _rank_for(name, r, pattern) * (fan_in + fan_out) + extra

    return count


def _ia3(method: dict[str, Any], name: str, fan_in: int, fan_out: int) -> int:
    feedforward = method.get("feedforward_modules")
    return fan_in if feedforward and _matches(name, feedforward) else fan_out


# Parameters one targeted linear layer adds, per method (None: cannot tell from the settings).
PER_LAYER: dict[str, Callable[[dict[str, Any], str, int, int], int | None]] = {
    "LORA": _low_rank(1),
    "LOHA": _low_rank(2),
    "IA3": _ia3,
}


def trainable_params(arch: Architecture, method: dict[str, Any]) -> tuple[int | None, int]:
    """(trainable parameters, or None for a method not counted here; number of targeted layers)."""
    chosen = _targeted(arch, method)
    per_layer = PER_LAYER.get(str(method.get("peft_type", "LORA")).upper())
    if per_layer is None:
        return None, len(chosen)
    counts = [per_layer(method, name, fan_in, fan_out) for name, fan_in, fan_out in chosen]
    if any(c is None for c in counts):
        return None, len(chosen)
    return sum(counts), len(chosen)


def count_steps(rows: int | None, training: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(training rows after the eval split, steps per epoch, total optimizer steps)."""
    max_steps = training.get("max_steps")
    if rows is None:
        return None, None, max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    try:
        eval_rows = int(rows * float(training.get("eval_fraction", 0.1))) if rows > 1 else 0
        train_rows = max(rows - eval_rows, 0)
        per_step = int(training.get("batch_size", 4)) * int(training.get("gradient_accumulation_steps", 1))
        per_epoch = max(math.ceil(train_rows / per_step), 1) if per_step > 0 else None
        if isinstance(max_steps, int) and max_steps > 0:
            return train_rows, per_epoch, max_steps
        epochs = float(training.get("epochs", 3.0))
        return train_rows, per_epoch, (max(math.ceil(per_epoch * epochs), 1) if per_epoch and epochs > 0 else None)
    except (TypeError, ValueError):
        return None, None, None


def _activation_bytes(arch: Architecture, training: dict[str, Any]) -> int:
    tokens = int(training.get("batch_size", 4)) * int(training.get("max_seq_length", 512))
    per_layer = 34 * arch.hidden_size * tokens
    if training.get("gradient_checkpointing"):
        layers = 2 * arch.hidden_size * tokens * arch.num_layers + per_layer  # kept block inputs + one recomputed block
    else:
        layers = per_layer * arch.num_layers
    logits = 2 * 4 * tokens * arch.vocab_size  # fp32 logits and their gradient
    return layers + logits


def estimate_run(spec: dict[str, Any], *, dataset_rows: int | None) -> RunEstimate:
    """Estimate a (possibly not yet valid) job spec; parts that cannot be computed stay None."""
    est = RunEstimate()
    method = spec.get("method") if isinstance(spec.get("method"), dict) else {}
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    est.train_rows, est.steps_per_epoch, est.total_steps = count_steps(dataset_rows, training)
    arch, est.model_source = resolve_architecture(str(spec.get("base_model") or ""))
    if arch is None:
        est.notes.append(f"Memory and parameter counts need the model's shape: {est.model_source}.")
        return est
    est.total_params = arch.total_params()
    try:
        est.trainable_params, est.targeted_layers = trainable_params(arch, method)
    except (TypeError, ValueError):
        est.notes.append("The target modules could not be read; fix them to see the parameter count.")
    precision = str(training.get("precision", "auto"))
    est.weights_bytes = est.total_params * _BYTES.get(precision, 2)
    if precision == "auto":
        est.notes.append("Assumes bf16 weights (a GPU); on a CPU the weights take twice as much.")
    if est.trainable_params is None:
        est.notes.append("Trainable parameters are not estimated for this method yet; memory leaves them out.")
    est.adapter_state_bytes = (est.trainable_params or 0) * _TRAINABLE_STATE_BYTES
    try:
        est.activation_bytes = _activation_bytes(arch, training)
    except (TypeError, ValueError):
        est.activation_bytes = None
    est.total_bytes = est.weights_bytes + est.adapter_state_bytes + (est.activation_bytes or 0) + OVERHEAD_BYTES
    return est
