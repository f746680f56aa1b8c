"""What LoRA adapts besides `target_modules`, run by the framework right after module injection:
raw parameters (`target_parameters`, params.py) and token rows (`trainable_token_indices`, tokens.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...tuner_model import TunerModel
    from .config import LoraConfig


def after_inject(tuner_model: TunerModel, config: LoraConfig, adapter_name: str) -> None:
    from .params import add_parameter_adapters  # imported here: params.py builds on layer.py, which imports us
    from .tokens import add_lora_token_adapters

    add_parameter_adapters(tuner_model, config, adapter_name)
    add_lora_token_adapters(tuner_model, config, adapter_name)
