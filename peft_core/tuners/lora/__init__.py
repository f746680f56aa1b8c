"""LoRA and its variants: config, layers, inits and the registration that plugs them in."""

from ...registry import MethodSpec, register_method
from ...targeting import DEFAULT_TARGETS
from ...types import PeftType
from .config import LoraConfig
from .layer import LoraConv, LoraEmbedding, LoraLayer, LoraLinear

register_method(
    MethodSpec(
        peft_type=PeftType.LORA,
        config_cls=LoraConfig,
        prefix="lora_",
        title="LoRA",
        layer_classes={"linear": LoraLinear, "conv": LoraConv, "embedding": LoraEmbedding},
        default_targets=DEFAULT_TARGETS,
    )
)

__all__ = ["LoraConfig", "LoraConv", "LoraEmbedding", "LoraLayer", "LoraLinear"]
