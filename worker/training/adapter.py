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


def after_optimizer_step(model: Any, step: int, total_steps: int) -> None:
    """Per-step work some methods need after the optimizer step (none yet for the registered methods)."""
