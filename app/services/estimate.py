"""A rough pre-flight summary of a run, computed without torch: trainable parameters, steps, memory.

Why: people want to know before pressing Start whether a run fits their GPU and how long it is
(the #3 complaint about other studios is an OOM with no warning). Everything here is arithmetic on
the model's shape (app.services.catalog) and the job spec, so it is labelled "rough":

- trainable parameters = the method config's own count (`trainable_parameter_count`, peft_core's
  torch-free protocol, checked against real adapters in tests/peft_core/test_parameter_counts.py) on
  the architecture laid out as named modules (`architecture_shape`); a method or setting that cannot
  be counted says so;
- steps = ceil(training rows / (batch * accumulation)) * epochs, or max_steps;
- memory = frozen weights at the training precision (with quantization: the linear layers at 4 or 8 bits,
  the rest in fp32) + adapter weights, gradients and AdamW states
  (fp32, 16 bytes per trainable parameter) + activations (about 34 * hidden bytes per token per
  layer at 16-bit, after Korthikanti et al. 2022; far less with gradient checkpointing) + fp32 logits
  + a fixed framework overhead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from app.jobspec import method_config
from app.services.catalog import Architecture, resolve_architecture
from peft_core.config import TargetingConfig
from peft_core.errors import ConfigError, PeftCoreError
from peft_core.shapes import ModelShape, ModuleShape

GIB = 2**30
OVERHEAD_BYTES = int(0.6 * GIB)  # CUDA context, allocator slack, kernels
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "auto": 2}
_TRAINABLE_STATE_BYTES = 16  # fp32 weight + fp32 grad + two fp32 AdamW moments
# Bytes per weight of a bitsandbytes layer: 4-bit with double quantization costs 4.127 bits (Dettmers et al.
# 2023, QLoRA); 8-bit is one byte (its per-row fp32 scales are added separately).
_QUANTIZED_BYTES = {"4bit-nf4": 4.127 / 8, "4bit-fp4": 4.127 / 8, "8bit": 1.0}


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


def _norm(name: str, size: int) -> ModuleShape:
    return ModuleShape(name, "module", numel=size, bias=0)


def _linear(name: str, fan_in: int, fan_out: int, bias: bool = False) -> ModuleShape:
    return ModuleShape(name, "linear", fan_in, fan_out, bias=fan_out if bias else 0, numel=fan_in * fan_out + (fan_out if bias else 0))


def _container(name: str, children: list[ModuleShape]) -> ModuleShape:
    return ModuleShape(name, "module", numel=sum(c.numel for c in children if c.name.count(".") == name.count(".") + 1))


def architecture_shape(arch: Architecture) -> ModelShape:
    """The catalog's architecture as named modules, laid out as transformers builds these decoders
    (model.embed_tokens, model.layers.N.{self_attn,mlp}.*, the norms, lm_head), for the configs' counts."""
    h, d = arch.hidden_size, arch.head_dim
    attn_bias = arch.model_type == "qwen2"  # Qwen2 has q/k/v biases
    qk_norm = arch.model_type in ("qwen3", "gemma3_text")
    norms = ["input_layernorm", "post_attention_layernorm"]
    if arch.model_type in ("gemma2", "gemma3_text"):
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    modules: list[ModuleShape] = [ModuleShape("model.embed_tokens", "embedding", arch.vocab_size, h, numel=arch.vocab_size * h)]
    for i in range(arch.num_layers):
        block = f"model.layers.{i}"
        attn = [_linear(f"{block}.{n}", a, b, attn_bias and n.split(".")[-1] in ("q_proj", "k_proj", "v_proj"))
                for n, a, b in arch.block_linears() if n.startswith("self_attn.")]
        if qk_norm:
            attn += [_norm(f"{block}.self_attn.q_norm", d), _norm(f"{block}.self_attn.k_norm", d)]
        mlp = [_linear(f"{block}.{n}", a, b) for n, a, b in arch.block_linears() if n.startswith("mlp.")]
        inner = [_container(f"{block}.self_attn", attn), *attn, _container(f"{block}.mlp", mlp), *mlp]
        inner += [_norm(f"{block}.{n}", h) for n in norms]
        modules += [_container(block, inner), *inner]
    modules.append(_norm("model.norm", h))
    layers = [m for m in modules if m.name.startswith("model.layers.")]
    modules.insert(1, ModuleShape("model.layers", "module", numel=sum(m.numel for m in layers if m.name.count(".") == 2)))
    modules.insert(0, ModuleShape("model", "module", numel=sum(m.numel for m in modules if m.name.count(".") == 1)))
    modules.append(_linear("lm_head", h, arch.vocab_size))
    return ModelShape(
        modules=tuple(modules),
        model_type=arch.model_type,
        hidden_size=h,
        num_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        vocab_size=arch.vocab_size,
        output_heads=frozenset({"lm_head"}),
        input_embedding="model.embed_tokens",
        tied_modules=(("model.embed_tokens", "lm_head"),) if arch.tie_embeddings else (),
        extra={"head_dim": arch.head_dim},  # prefix tuning sizes its key/value prefixes per KV head
    )


def trainable_params(arch: Architecture, method: dict[str, Any]) -> tuple[int | None, int | None]:
    """(trainable parameters, number of adapted layers) from the method's own count (peft_core's
    `trainable_parameter_count` protocol); None where the method cannot count on this shape.
    Raises ConfigError when the settings are not valid yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = method_config({"peft_type": "LORA", **method}, "CAUSAL_LM")
    shape = architecture_shape(arch)
    targeted = config.targeted_modules(shape) if isinstance(config, TargetingConfig) else None
    return config.trainable_parameter_count(shape), (len(targeted) if targeted is not None else None)


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


def _weights_bytes(arch: Architecture, precision: str, quantization: str) -> tuple[int, str | None]:
    """Frozen weights' bytes and a note. Quantized: the block linears in bitsandbytes' format, everything
    else (embeddings, norms, an untied head) in fp32, as prepare_model_for_kbit_training leaves it."""
    per_weight = _QUANTIZED_BYTES.get(quantization)
    if per_weight is None:
        return arch.total_params() * _BYTES.get(precision, 2), None
    linears = arch.linear_modules()
    quantized = sum(fan_in * fan_out for _, fan_in, fan_out in linears)
    scales = 4 * sum(fan_out for _, _, fan_out in linears) if quantization == "8bit" else 0
    rest = arch.total_params() - quantized
    note = f"Linear layers in {quantization} (about {per_weight:.2f} bytes a weight), the rest in fp32 as QLoRA prepares it."
    return int(quantized * per_weight) + scales + rest * 4, note


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
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        est.notes.append(f"Fix the method settings to see the parameter count ({first}); memory leaves the adapter out.")
    except (PeftCoreError, TypeError, ValueError) as exc:
        est.notes.append(f"The parameter count could not be worked out from these settings ({exc}).")
    precision = str(training.get("precision", "auto"))
    est.weights_bytes, quantized_note = _weights_bytes(arch, precision, str(training.get("quantization", "none")))
    if quantized_note:
        est.notes.append(quantized_note)
    elif precision == "auto":
        est.notes.append("Assumes bf16 weights (a GPU); on a CPU the weights take twice as much.")
    if est.trainable_params is None and not any("parameter count" in n for n in est.notes):
        est.notes.append("Trainable parameters are not estimated for these settings; memory leaves them out.")
    est.adapter_state_bytes = (est.trainable_params or 0) * _TRAINABLE_STATE_BYTES
    try:
        est.activation_bytes = _activation_bytes(arch, training)
    except (TypeError, ValueError):
        est.activation_bytes = None
    est.total_bytes = est.weights_bytes + est.adapter_state_bytes + (est.activation_bytes or 0) + OVERHEAD_BYTES
    return est
