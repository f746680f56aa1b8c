"""LoRA and its variants. Registering imports only the config; layers load when a model is adapted."""

from ...default_targets import DEFAULT_TARGETS
from ...registry import MethodSpec, register_method
from ...types import PeftType
from .config import LoraConfig

register_method(
    MethodSpec(
        peft_type=PeftType.LORA,
        config_cls=LoraConfig,
        prefix="lora_",
        layers="peft_core.tuners.lora.layer",
        title="LoRA",
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["LoraConfig"]
