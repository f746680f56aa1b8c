"""PeftModel and its task classes: the wrapper people save, load and train.

Names and signatures follow peft's, so a script moves over by changing its import. The wrapper holds a
`TunerModel` as `base_model`; unknown attributes fall through to it and then to the user model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import (
    get_peft_model_state_dict,
    load_peft_weights,
    save_adapter_weights,
    set_peft_model_state_dict,
    warn_missing,
)
from .config import PeftConfig, skipping_init
from .errors import AdapterNotFoundError, ConfigError
from .tuner_model import TunerModel
from .types import TaskType


class PeftModel(nn.Module):
    """A model with one or more named adapters of one method."""

    extra_modules_to_save: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **_: Any):
        super().__init__()
        peft_config = self._with_task_heads(peft_config, model)
        if getattr(peft_config, "base_model_name_or_path", None) is None:
            peft_config.base_model_name_or_path = _name_or_path(model)
        if peft_config.is_prompt_learning:  # no layers to inject: the wrapper feeds the prompt (prompt_learning.py)
            from .prompt_learning import PromptLearningModel

            self.base_model = PromptLearningModel(model, peft_config, adapter_name, optional_modules_to_save=self.extra_modules_to_save)
        else:
            self.base_model = TunerModel(model, peft_config, adapter_name, optional_modules_to_save=self.extra_modules_to_save)
        self.active_adapter = adapter_name

    def _with_task_heads(self, config: PeftConfig, model: nn.Module) -> PeftConfig:
        """Task heads (classifier, score, qa_outputs) are trained fully and saved with the adapter.

        All of the task's head names are listed, whether or not this model has each, as peft does: the
        saved adapter_config.json is then the same as peft's, and either library finds the head.
        """
        if not self.extra_modules_to_save or not hasattr(config, "modules_to_save"):
            return config
        current = list(config.modules_to_save or [])
        config.modules_to_save = current + [h for h in self.extra_modules_to_save if h not in current]
        return config

    # ------------------------------------------------------------------ delegation

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        from .prompt_learning import PromptLearningModel

        if isinstance(self.base_model, PromptLearningModel):  # the prompt goes in at the first step
            return self.base_model.generate(*args, **kwargs)
        return self.base_model.model.generate(*args, **kwargs)

    def get_base_model(self) -> nn.Module:
        return self.base_model.model

    @property
    def peft_config(self) -> dict[str, PeftConfig]:
        return self.base_model.peft_config

    @property
    def active_adapters(self) -> list[str]:
        return self.base_model.active_adapters

    @property
    def modules_to_save(self) -> set[str] | None:
        names = {n for c in self.peft_config.values() for n in (getattr(c, "modules_to_save", None) or [])}
        return names or None

    # ------------------------------------------------------------------ adapters

    def add_adapter(self, adapter_name: str, peft_config: PeftConfig) -> None:
        """Add another adapter of the same method; it is not activated."""
        peft_config = self._with_task_heads(peft_config, self.base_model.model)
        if getattr(peft_config, "base_model_name_or_path", None) is None:
            peft_config.base_model_name_or_path = _name_or_path(self.base_model.model)
        active = self.base_model.active_adapter
        self.base_model.inject_adapter(peft_config, adapter_name)
        self.base_model.set_adapter(active if self.base_model.active_adapters else adapter_name)
        self.active_adapter = self.base_model.active_adapter

    def set_adapter(self, adapter_name: str) -> None:
        self.base_model.set_adapter(adapter_name)
        self.active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str) -> None:
        self.base_model.delete_adapter(adapter_name)
        self.active_adapter = self.base_model.active_adapter

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the base model only, inside the `with` block."""
        with self.base_model.disable_adapter():
            yield

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        trainable, total = 0, 0
        for p in self.parameters():
            n = p.numel()
            if p.__class__.__name__ == "Params4bit":  # packed 4-bit storage: two values per storage byte
                n = n * 2 * p.element_size()
            total += n
            if p.requires_grad:
                trainable += n
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / max(total, 1):.4f}")

    # ------------------------------------------------------------------ save / load

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        selected_adapters: list[str] | None = None,
        save_embedding_layers: bool | str = "auto",
        is_main_process: bool = True,
        **_: Any,
    ) -> None:
        """Write adapter_model.safetensors + adapter_config.json (+ README.md) as peft does.

        The adapter named "default" goes to `save_directory`, any other to `save_directory/<name>`; the
        saved config says inference_mode true. Only the main process writes (distributed training).
        """
        if os.path.isfile(save_directory):
            raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder path")
        names = list(self.peft_config) if selected_adapters is None else list(selected_adapters)
        unknown = [n for n in names if n not in self.peft_config]
        if unknown:  # check all before writing anything
            raise AdapterNotFoundError(f"no adapter named {unknown} to save; this model has {list(self.peft_config)}")
        if not is_main_process:
            return
        base = self.base_model.model
        for name in names:
            target = os.fspath(save_directory) if name == "default" else os.path.join(save_directory, name)
            state = get_peft_model_state_dict(self, adapter_name=name, save_embedding_layers=save_embedding_layers)
            save_adapter_weights(state, target, safe_serialization=safe_serialization)
            config = self.peft_config[name]
            extra: dict[str, Any] = {"inference_mode": True}
            if config.task_type is None:  # lets peft's AutoPeftModel find the base class
                extra["auto_mapping"] = {"base_model_class": type(base).__name__, "parent_library": type(base).__module__}
            config.save_pretrained(target, **extra)
        if names:
            from . import __version__
            from .hub import write_model_card

            first = self.peft_config[names[0]]
            write_model_card(
                save_directory,
                method=first.peft_type.value,
                base_model=first.base_model_name_or_path,
                task_type=first.task_type,
                transformers_model=type(base).__module__.startswith("transformers."),
                version=__version__,
            )

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """Wrap `model` with an adapter saved by peft_core or peft (local folder or Hub repo id)."""
        hub_kwargs = {k: kwargs[k] for k in ("subfolder", "revision", "token", "cache_dir") if k in kwargs}
        if config is None:
            config = PeftConfig.from_pretrained(model_id, **hub_kwargs)
        config.inference_mode = not is_trainable
        wrapper_cls = cls
        if cls is PeftModel and config.task_type is not None:
            wrapper_cls = MODEL_TYPE_TO_PEFT_MODEL.get(config.task_type, PeftModel)
        with skipping_init(config):  # the saved tensors overwrite the adapter next
            peft_model = wrapper_cls(model, config, adapter_name)
        peft_model._load_weights(model_id, adapter_name, kwargs.get("torch_device"), hub_kwargs)
        if not is_trainable:
            peft_model.eval()
        return peft_model

    def load_adapter(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool = False, torch_device: str | None = None, **kwargs: Any) -> tuple[list[str], list[str]]:
        """Load another saved adapter under `adapter_name` (not activated)."""
        hub_kwargs = {k: kwargs[k] for k in ("subfolder", "revision", "token", "cache_dir") if k in kwargs}
        config = PeftConfig.from_pretrained(model_id, **hub_kwargs)
        config.inference_mode = not is_trainable
        with skipping_init(config):
            self.add_adapter(adapter_name, config)
        return self._load_weights(model_id, adapter_name, torch_device, hub_kwargs)

    def _load_weights(self, model_id: Any, adapter_name: str, device: Any, hub_kwargs: dict) -> tuple[list[str], list[str]]:
        state = load_peft_weights(model_id, device=device, **hub_kwargs)
        missing, unexpected = set_peft_model_state_dict(self, state, adapter_name=adapter_name)
        warn_missing(missing, unexpected, str(model_id))
        return missing, unexpected


def _name_or_path(model: nn.Module) -> str | None:
    value = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return value or None


class PeftModelForCausalLM(PeftModel):
    """Decoder-only language models (generation works through `generate`)."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        return self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class PeftModelForSeq2SeqLM(PeftModel):
    """Encoder-decoder models (T5, BART)."""


class PeftModelForSequenceClassification(PeftModel):
    """The classification head (classifier/score) is trained and saved with the adapter."""

    extra_modules_to_save = ("classifier", "score")


class PeftModelForTokenClassification(PeftModel):
    extra_modules_to_save = ("classifier", "score")


class PeftModelForQuestionAnswering(PeftModel):
    extra_modules_to_save = ("qa_outputs",)


class PeftModelForFeatureExtraction(PeftModel):
    """Encoders used for embeddings."""


MODEL_TYPE_TO_PEFT_MODEL: dict[str, type[PeftModel]] = {
    TaskType.CAUSAL_LM.value: PeftModelForCausalLM,
    TaskType.SEQ_2_SEQ_LM.value: PeftModelForSeq2SeqLM,
    TaskType.SEQ_CLS.value: PeftModelForSequenceClassification,
    TaskType.TOKEN_CLS.value: PeftModelForTokenClassification,
    TaskType.QUESTION_ANS.value: PeftModelForQuestionAnswering,
    TaskType.FEATURE_EXTRACTION.value: PeftModelForFeatureExtraction,
}


def get_peft_model(model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **kwargs: Any) -> PeftModel:
    """Wrap `model` (modified in place) with a new trainable adapter; the task type picks the class."""
    if not isinstance(peft_config, PeftConfig):
        raise ConfigError("get_peft_model", [f"peft_config: expected a PeftConfig such as LoraConfig, got {type(peft_config).__name__}"])
    cls = MODEL_TYPE_TO_PEFT_MODEL.get(peft_config.task_type or "", PeftModel)
    return cls(model, peft_config, adapter_name, **kwargs)


def inject_adapter_in_model(peft_config: PeftConfig, model: nn.Module, adapter_name: str = "default") -> nn.Module:
    """Add adapter layers to `model` in place without a PeftModel wrapper (keys get no prefix)."""
    if peft_config.is_prompt_learning:
        raise ConfigError(
            "inject_adapter_in_model",
            [f"peft_type: {peft_config.peft_type.value} adds no layers to inject (the wrapper feeds the prompt); use get_peft_model"],
        )
    tuner = TunerModel(model, peft_config, adapter_name)
    model.peft_config = tuner.peft_config  # type: ignore[assignment]
    return model
