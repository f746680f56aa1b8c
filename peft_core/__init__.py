"""peft_core: PEFT Studio's parameter-efficient fine-tuning engine.

The public names mirror `peft`, so `from peft import ...` becomes `from peft_core import ...`.
Checkpoints are PEFT's format: adapters move freely between peft_core, peft, transformers and servers.
"""

from .checkpoint import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict
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
from .peft_model import (
    PeftModel,
    PeftModelForCausalLM,
    PeftModelForFeatureExtraction,
    PeftModelForQuestionAnswering,
    PeftModelForSeq2SeqLM,
    PeftModelForSequenceClassification,
    PeftModelForTokenClassification,
    get_peft_model,
    inject_adapter_in_model,
)
from .registry import get_method, register_method, registered_methods
from .tuners.lora import LoraConfig
from .types import PeftType, TaskType

__version__ = "0.1.0"

__all__ = [
    "AdapterConfig",
    "AdapterNotFoundError",
    "CheckpointError",
    "ConfigError",
    "LoraConfig",
    "MergeError",
    "NoMatchingModulesError",
    "PeftConfig",
    "PeftCoreError",
    "PeftModel",
    "PeftModelForCausalLM",
    "PeftModelForFeatureExtraction",
    "PeftModelForQuestionAnswering",
    "PeftModelForSeq2SeqLM",
    "PeftModelForSequenceClassification",
    "PeftModelForTokenClassification",
    "PeftType",
    "TaskType",
    "UnsupportedLayerError",
    "get_method",
    "get_peft_model",
    "get_peft_model_state_dict",
    "inject_adapter_in_model",
    "load_peft_weights",
    "register_method",
    "registered_methods",
    "set_peft_model_state_dict",
]
