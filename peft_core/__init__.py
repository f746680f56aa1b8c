"""peft_core: PEFT Studio's parameter-efficient fine-tuning engine.

The public names mirror `peft`, so `from peft import ...` becomes `from peft_core import ...`.
Checkpoints are PEFT's format: adapters move freely between peft_core, peft, transformers and servers.

Names are imported lazily: `import peft_core` and the config/registry modules do not import torch, so
the studio's web process can list methods and validate configs without loading the ML stack.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import AdapterConfig, PeftConfig
from .errors import (
    AdapterNotFoundError,
    CheckpointError,
    ConfigError,
    MergeError,
    NoMatchingModulesError,
    PeftCoreError,
    UnsupportedLayerError,
)
from .registry import get_method, register_method, registered_methods
from .tuners.boft import BOFTConfig
from .tuners.ia3 import IA3Config
from .tuners.ln_tuning import LNTuningConfig
from .tuners.loha import LoHaConfig
from .tuners.lokr import LoKrConfig
from .tuners.lora.config import LoraConfig
from .tuners.oft import OFTConfig
from .tuners.prompt_learning import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig
from .tuners.trainable_tokens import TrainableTokensConfig
from .types import PeftType, TaskType

__version__ = "0.1.0"

_LAZY = {
    "get_peft_model_state_dict": "checkpoint",
    "set_peft_model_state_dict": "checkpoint",
    "load_peft_weights": "checkpoint",
    "PeftModel": "peft_model",
    "PeftModelForCausalLM": "peft_model",
    "PeftModelForFeatureExtraction": "peft_model",
    "PeftModelForQuestionAnswering": "peft_model",
    "PeftModelForSeq2SeqLM": "peft_model",
    "PeftModelForSequenceClassification": "peft_model",
    "PeftModelForTokenClassification": "peft_model",
    "get_peft_model": "peft_model",
    "inject_adapter_in_model": "peft_model",
    "prepare_model_for_kbit_training": "training",
    "hotswap_adapter": "hotswap",
    "hotswap_adapter_from_state_dict": "hotswap",
    "rescale_adapter_scale": "helpers",
    "check_if_peft_model": "helpers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'peft_core' has no attribute {name!r}")


__all__ = [
    "AdapterConfig",
    "AdapterNotFoundError",
    "BOFTConfig",
    "CheckpointError",
    "ConfigError",
    "IA3Config",
    "LNTuningConfig",
    "LoHaConfig",
    "LoKrConfig",
    "LoraConfig",
    "MergeError",
    "NoMatchingModulesError",
    "OFTConfig",
    "PeftConfig",
    "PeftCoreError",
    "PeftType",
    "PrefixTuningConfig",
    "PromptEncoderConfig",
    "PromptTuningConfig",
    "TaskType",
    "TrainableTokensConfig",
    "UnsupportedLayerError",
    "get_method",
    "register_method",
    "registered_methods",
    *_LAZY,
]
