"""The job's method on the base model: wrapping it with peft_core, and what a method needs after each step.

Everything method-specific the trainer does lives here, so the loop stays one loop for every method.
"""

from __future__ import annotations

from typing import Any

import torch

from app.jobspec import JobSpec, method_config

from .errors import TrainingError
from .model import BaseModel
from .precision import Precision


def wrap_model(base: BaseModel, job: JobSpec, precision: Precision, log: Any) -> Any:
    """The base model with the job's adapter (peft_core), on the device, trainable parameters in fp32."""
    import peft_core

    settings = job.training
    quantized = settings.quantization != "none"
    if quantized:  # freeze, upcast norms/head to fp32, input grads for checkpointing (QLoRA recipe)
        peft_core.prepare_model_for_kbit_training(
            base.model, use_gradient_checkpointing=settings.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        log(f"base model loaded in {settings.quantization} (bitsandbytes)")
    elif settings.gradient_checkpointing:
        if getattr(base.model, "supports_gradient_checkpointing", False):
            base.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            log("gradient checkpointing: this model does not support it; training without")
    try:
        config = method_config(job.method, job.task_type)
        config.base_model_name_or_path = job.base_model
        model = peft_core.get_peft_model(base.model, config)
    except peft_core.PeftCoreError as exc:
        raise TrainingError(f"The method settings do not fit {job.base_model}: {exc}", hint="Adjust the method's target modules or settings.") from exc
    if not quantized:  # a quantized model was placed on its device at load time and cannot be moved
        model.to(precision.device)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    trainable, total = model.get_nb_trainable_parameters()
    if trainable == 0:
        raise TrainingError(f"The method {job.method.get('peft_type')} left nothing to train in {job.base_model}.", hint="Check the method's target modules.")
    log(f"method {config.peft_type.value}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    return model


def _method_hook(model: Any, name: str) -> Any:
    """A model-level function the job's method defines in its layer module (None when it has none)."""
    from peft_core.registry import spec_for_config

    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    return getattr(spec_for_config(next(iter(configs.values()))).layer_module, name, None)


def extra_loss(model: Any) -> torch.Tensor | None:
    """A term the method adds to the training loss (AdaLoRA: its orthogonal regulariser), or None.

    peft adds it inside forward when the model computes the loss from labels; the loop computes the loss
    from logits itself, so it adds this instead.
    """
    hook = _method_hook(model, "extra_loss")
    return None if hook is None else hook(model.base_model)


def after_optimizer_step(model: Any, step: int, total_steps: int) -> None:
    """Per-step work some methods need after the optimizer step.

    AdaLoRA: `update_and_allocate(step)` reallocates the rank budget. Its `total_step`, when the job left
    it empty, is the plan's number of steps (filled here, before the first allocation, and saved with the
    adapter).
    """
    if _method_hook(model, "update_and_allocate") is None:
        return
    config = next(c for c in model.peft_config.values() if not c.inference_mode)
    if config.total_step is None:
        config.total_step = total_steps
        if config.tinit >= total_steps - config.tfinal:
            raise TrainingError(
                f"AdaLoRA's schedule does not fit this run: {total_steps} steps, tinit={config.tinit}, tfinal={config.tfinal} leave no "
                "step to reallocate ranks.",
                hint="Lower method.tinit/method.tfinal, or train for more steps.",
            )
    model.base_model.update_and_allocate(step)
