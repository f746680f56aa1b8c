"""The wrapper side of prompt learning: virtual tokens or key/value prefixes in front of every input.

`PeftModel` holds a `PromptLearningModel` as `base_model` when its config is a prompt-learning one (in
place of the `TunerModel` that injects layers). Nothing inside the user model changes: per adapter a
prompt encoder (tuners/prompt_learning/encoders.py) computes the prompt, and `forward`/`generate` feed it
to the model, following peft 0.21.2's PeftModelForCausalLM:

- prompt tuning, p-tuning: the prompt is concatenated before the input embeddings; the attention mask
  gets V ones in front and labels V times -100, so logits come back V positions longer;
- prefix tuning: the prefixes go in as a `DynamicCache` already holding V positions per layer; the
  attention mask gets V ones in front and logits keep the input's length.

CAUSAL_LM and SEQ_CLS are implemented; other task types are refused at wrap time. For SEQ_CLS the task
head is trained whole (modules_to_save, as peft) and saved beside `prompt_embeddings` under peft's keys
(`base_model.<path>.<tensor>`); token type ids get V zeros in front.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from .auxiliary import ModulesToSaveWrapper
from .delegation import Delegating
from .errors import AdapterNotFoundError, CheckpointError, ConfigError, MergeError
from .types import TaskType

SUPPORTED_TASKS = (TaskType.CAUSAL_LM.value, TaskType.SEQ_CLS.value)


def _model_config(model: nn.Module) -> dict[str, Any]:
    """The model's config as a dict; multimodal models' text part."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    data = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "head_dim", "num_key_value_heads"):
        if key not in data and getattr(config, key, None) is not None:  # attributes some configs keep off to_dict
            data[key] = getattr(config, key)
    return data


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def fill_from_model(config: Any, model: nn.Module) -> Any:
    """Set the fields left empty from the model config, as peft's _prepare_prompt_learning_config does.

    For prefix tuning on grouped-query attention the prefix is per KV head: token_dim becomes
    head_dim * num_key_value_heads and num_attention_heads the KV head count.
    """
    data = _model_config(model)
    missing = []
    for name, keys in (
        ("num_layers", ("num_hidden_layers", "num_layers", "n_layer")),
        ("token_dim", ("hidden_size", "n_embd", "d_model")),
        ("num_attention_heads", ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")),
    ):
        if getattr(config, name) is None:
            value = _first(data, keys)
            if value is None:
                missing.append(f"{name}: not set, and the model config does not say it; set it in the method settings")
            setattr(config, name, value)
    if missing:
        raise ConfigError(type(config).__name__, missing)
    config.adjust_for_kv_heads(data.get("head_dim"), data.get("num_key_value_heads"))
    if hasattr(config, "encoder_hidden_size") and config.encoder_hidden_size is None:
        config.encoder_hidden_size = config.token_dim
    if config.num_transformer_submodules is None:
        config.num_transformer_submodules = 2 if config.task_type == TaskType.SEQ_2_SEQ_LM.value else 1
    return config


class PromptLearningModel(Delegating):
    """Named prompt adapters over an unchanged model: one active at a time, as in peft."""

    def __init__(self, model: nn.Module, config: Any, adapter_name: str = "default", optional_modules_to_save: tuple[str, ...] = ()):
        super().__init__()
        self.model = model
        self.optional_modules_to_save = tuple(optional_modules_to_save)  # task heads a model may lack: no warning
        self.peft_config: dict[str, Any] = {}
        self.prompt_encoder = nn.ModuleDict()
        self.active_adapter: str = adapter_name
        self.disabled = False
        for p in model.parameters():
            p.requires_grad = False
        self.inject_adapter(config, adapter_name)

    @property
    def active_adapters(self) -> list[str]:
        return [self.active_adapter] if self.active_adapter in self.peft_config else []

    @property
    def word_embeddings(self) -> nn.Module | None:
        try:
            return self.model.get_input_embeddings()
        except (AttributeError, NotImplementedError):
            return None

    # ------------------------------------------------------------------ adapters

    def inject_adapter(self, config: Any, adapter_name: str) -> None:
        from .tuners.prompt_learning.encoders import build_encoder

        if adapter_name in self.peft_config:
            raise ConfigError("adapter", [f"adapter_name: an adapter named {adapter_name!r} already exists; pick another name"])
        if not getattr(config, "is_prompt_learning", False):
            raise ConfigError("adapter", [f"peft_type: this model holds prompt-learning adapters; {config.peft_type.value} cannot be added to it"])
        if config.task_type not in SUPPORTED_TASKS:
            raise ConfigError(
                type(config).__name__,
                [f"task_type: prompt learning in peft_core supports {', '.join(SUPPORTED_TASKS)}, got {config.task_type!r}; "
                 "set task_type='CAUSAL_LM' for a decoder-only language model"],
            )
        if config.peft_type.value == "PREFIX_TUNING" and _cache_argument(self.model) is None:
            raise ConfigError(
                type(config).__name__,
                [f"peft_type: prefix tuning passes its prefixes as a KV cache, and {type(self.model).__name__}.forward takes none; "
                 "use prompt tuning or p-tuning with this model"],
            )
        if config.peft_type.value == "PREFIX_TUNING" and any(getattr(m, "gradient_checkpointing", False) for m in self.model.modules()):
            raise ConfigError(
                type(config).__name__,
                ["peft_type: prefix tuning passes its prefixes as a KV cache, which gradient checkpointing does not allow; turn gradient checkpointing off"],
            )
        config = fill_from_model(config, self.model)
        if config.num_transformer_submodules != 1:  # 2 is for encoder-decoder models, which are not supported
            raise ConfigError(
                type(config).__name__,
                [f"num_transformer_submodules: {config.task_type} models have one transformer stack, got {config.num_transformer_submodules}; leave it empty"],
            )
        if config.peft_type.value == "PREFIX_TUNING" and config.token_dim % config.num_attention_heads:
            raise ConfigError(type(config).__name__, [f"token_dim: {config.token_dim} is not divisible by num_attention_heads {config.num_attention_heads}"])
        encoder = build_encoder(config, self.word_embeddings)
        weight = next((p for p in self.model.parameters()), None)
        if weight is not None:
            encoder.to(weight.device)
        self.prompt_encoder[adapter_name] = encoder
        self.peft_config[adapter_name] = config
        for name in config.modules_to_save or []:
            self._wrap_module_to_save(name, adapter_name)
        self._mark_trainable()

    def _wrap_module_to_save(self, name_spec: str, adapter_name: str) -> None:
        """Give the adapter its own trainable copy of each module named `name_spec` (or ending in it)."""
        found = False
        for name, module in list(self.model.named_modules()):
            if not name or not (name == name_spec or name.endswith("." + name_spec)) or ".modules_to_save." in f".{name}.":
                continue
            if name.endswith(".original_module") or ".original_module." in name:
                continue
            found = True
            if isinstance(module, ModulesToSaveWrapper):
                module.add_adapter(adapter_name)
            else:
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, ModulesToSaveWrapper(module, adapter_name))
        if not found and name_spec not in self.optional_modules_to_save:
            warnings.warn(f"modules_to_save entry {name_spec!r} matched no module (typo?)", stacklevel=4)

    def saved_modules(self) -> Iterator[tuple[str, ModulesToSaveWrapper]]:
        for name, module in self.model.named_modules():
            if isinstance(module, ModulesToSaveWrapper):
                yield name, module

    def _mark_trainable(self) -> None:
        """Only the active adapter's prompt encoder and module copies train (none when loaded for inference)."""
        active = self.active_adapter if self.active_adapter in self.peft_config else None
        for name, encoder in self.prompt_encoder.items():
            for p in encoder.parameters():
                p.requires_grad = name == active and not self.peft_config[name].inference_mode
        for _, wrapper in self.saved_modules():
            wrapper.set_adapter(active or [])
            for name in wrapper.adapter_names:
                wrapper.set_requires_grad(name, name == active and not self.peft_config[name].inference_mode)

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) != 1:
            raise ConfigError("adapter", [f"adapter_name: prompt learning runs one adapter at a time, got {names}; pick one"])
        if names[0] not in self.peft_config:
            raise AdapterNotFoundError(f"no adapter named {names[0]!r}; this model has {list(self.peft_config)}")
        self.active_adapter = names[0]
        self._mark_trainable()

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            raise AdapterNotFoundError(f"no adapter named {adapter_name!r}; this model has {list(self.peft_config)}")
        del self.peft_config[adapter_name]
        del self.prompt_encoder[adapter_name]
        for name, wrapper in list(self.saved_modules()):
            if adapter_name in wrapper.adapter_names:
                wrapper.delete_adapter(adapter_name)
            if not wrapper.adapter_names:
                parent_name, _, child = name.rpartition(".")
                setattr(self.model.get_submodule(parent_name) if parent_name else self.model, child, wrapper.original_module)
        if adapter_name == self.active_adapter:
            self.active_adapter = next(iter(self.peft_config), "")
        self._mark_trainable()

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        previously = self.disabled
        self._set_disabled(True)
        try:
            yield
        finally:
            self._set_disabled(previously)

    def _set_disabled(self, disabled: bool) -> None:
        """Run the plain model: no prompt, and the original task heads instead of their trained copies."""
        self.disabled = disabled
        for _, wrapper in self.saved_modules():
            wrapper.disabled = disabled

    def disable_adapter_layers(self) -> None:
        self._set_disabled(True)

    def enable_adapter_layers(self) -> None:
        self._set_disabled(False)

    def _refuse_merge(self, *_: Any, **__: Any) -> Any:
        raise MergeError(
            "prompt-learning adapters (prompt tuning, p-tuning, prefix tuning) cannot be merged into the base weights: "
            "the prompt is extra input, not a weight change. Keep the adapter and load it with the base model"
        )

    merge_adapter = merge_and_unload = unmerge_adapter = _refuse_merge

    def unload(self) -> nn.Module:
        """The base model without prompts, its original task heads back in place."""
        for name in list(self.peft_config):
            self.delete_adapter(name)
        return self.model

    def saved_module_tensors(self, adapter_name: str) -> dict[str, torch.Tensor]:
        """The adapter's module copies under peft's prompt-learning keys: base_model.<path>.<tensor>."""
        out: dict[str, torch.Tensor] = {}
        for name, wrapper in self.saved_modules():
            if adapter_name in wrapper.adapter_names:
                for local, tensor in wrapper.modules_to_save[adapter_name].named_parameters():
                    out[f"base_model.{name}.{local}"] = tensor
        return out

    # ------------------------------------------------------------------ the prompt

    def _config(self) -> Any:
        if self.active_adapter not in self.peft_config:
            raise AdapterNotFoundError(f"no active adapter; this model has {list(self.peft_config)}: call set_adapter()")
        return self.peft_config[self.active_adapter]

    def _encoded(self, adapter_name: str, batch: int | None = None) -> torch.Tensor:
        """The encoder's output for all virtual tokens: (V, width), or (batch, V, width) when batch is given."""
        config, encoder = self.peft_config[adapter_name], self.prompt_encoder[adapter_name]
        count = config.num_virtual_tokens if config.peft_type.value == "PREFIX_TUNING" else config.num_virtual_tokens * config.num_transformer_submodules
        if config.inference_mode or not encoder.reparameterized:
            out = encoder.embedding.weight
        else:
            out = encoder(torch.arange(count, device=encoder.embedding.weight.device).unsqueeze(0))[0]
        return out if batch is None else out.unsqueeze(0).expand(batch, -1, -1)

    def prompt_embedding_to_save(self, adapter_name: str) -> torch.Tensor:
        """What peft saves as `prompt_embeddings`: the encoder's output, so the encoder itself is not needed to use it."""
        with torch.no_grad():
            return self._encoded(adapter_name).detach().cpu()

    def load_prompt_embeddings(self, adapter_name: str, value: torch.Tensor) -> None:
        encoder = self.prompt_encoder[adapter_name]
        if encoder.reparameterized:
            raise CheckpointError(
                f"adapter {adapter_name!r} trains through a prompt encoder (MLP/LSTM or prefix projection), but a checkpoint holds only "
                "its output (prompt_embeddings), from which the encoder cannot be rebuilt; load it for inference "
                "(is_trainable=False), or start training afresh"
            )
        weight = encoder.embedding.weight
        if tuple(weight.shape) != tuple(value.shape):
            raise CheckpointError(
                f"prompt_embeddings: checkpoint {tuple(value.shape)} vs model {tuple(weight.shape)} "
                "(was it trained with other num_virtual_tokens or on another base model?)"
            )
        with torch.no_grad():
            weight.copy_(value.to(device=weight.device, dtype=weight.dtype))

    def prompts(self, batch: int) -> torch.Tensor:
        """Virtual token embeddings to prepend: (batch, V, token_dim)."""
        return self._encoded(self.active_adapter, batch)

    def past_key_values(self, batch: int) -> Any:
        """Prefix tuning's prefixes as a cache of V positions per layer, in the model's dtype."""
        from transformers import DynamicCache

        config = self._config()
        heads = config.num_attention_heads
        flat = self._encoded(self.active_adapter, batch)
        dtype = getattr(self.model, "dtype", None)
        if dtype is not None:
            flat = flat.to(dtype)
        # (batch, V, layers * 2 * dim) -> per layer: key and value of shape (batch, heads, V, head_dim)
        kv = flat.reshape(batch, config.num_virtual_tokens, config.num_layers * 2, heads, config.token_dim // heads).permute(2, 0, 3, 1, 4)
        return DynamicCache([(kv[2 * i], kv[2 * i + 1]) for i in range(config.num_layers)])

    # ------------------------------------------------------------------ forward / generate

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if self.disabled or not self.peft_config:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, labels=labels, **kwargs)
        config = self._config()
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids or inputs_embeds")
        batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        virtual = config.num_virtual_tokens
        if attention_mask is not None:
            attention_mask = torch.cat((attention_mask.new_ones(batch, virtual), attention_mask), dim=1)
        self._adjust_ids(config, kwargs)
        if config.peft_type.value == "PREFIX_TUNING":
            key = _cache_argument(self.model) or "past_key_values"
            if kwargs.get(key) is not None:
                raise ValueError(f"prefix tuning supplies {key} itself; call forward without it (use generate to continue text)")
            kwargs[key] = self.past_key_values(batch)
            return self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if labels is not None and config.task_type == TaskType.CAUSAL_LM.value:  # per-token labels: none for the prompt
            labels = torch.cat((labels.new_full((batch, virtual), -100), labels), dim=1)
        if kwargs.get("token_type_ids") is not None:
            kwargs["token_type_ids"] = torch.cat((kwargs["token_type_ids"].new_zeros(batch, virtual), kwargs["token_type_ids"]), dim=1)
        inputs_embeds = torch.cat((self.prompts(batch).to(inputs_embeds.dtype), inputs_embeds), dim=1)
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @staticmethod
    def _adjust_ids(config: Any, kwargs: dict[str, Any], warn: bool = True) -> None:
        """Position ids shift past the prefix for prefix tuning; other methods drop them (and token type ids)."""
        if kwargs.get("position_ids") is not None:
            if config.peft_type.value == "PREFIX_TUNING":
                kwargs["position_ids"] = kwargs["position_ids"] + config.num_virtual_tokens
            else:
                if warn:
                    warnings.warn("position_ids are ignored with prompt learning: the virtual tokens take the first positions", stacklevel=3)
                kwargs["position_ids"] = None
        if kwargs.get("token_type_ids") is not None and config.task_type == TaskType.CAUSAL_LM.value:  # SEQ_CLS keeps them
            if warn:
                warnings.warn("token_type_ids are ignored with prompt learning", stacklevel=3)
            kwargs["token_type_ids"] = None

    def generate(self, *gen_args: Any, **gen_kwargs: Any) -> Any:
        """The model's generate, with the prompt fed in at the first (prefill) step."""
        if self.disabled or not self.peft_config:
            return self.model.generate(*gen_args, **gen_kwargs)
        original = self.model.prepare_inputs_for_generation

        def prepare(*args: Any, **kwargs: Any) -> dict[str, Any]:  # named `kwargs`: generate checks for that name
            return self._prepare_generation_inputs(original(*args, **kwargs))

        self.model.prepare_inputs_for_generation = prepare
        try:
            return self.model.generate(*gen_args, **gen_kwargs)
        finally:
            del self.model.prepare_inputs_for_generation  # the class method shows through again

    def _prepare_generation_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Add the prompt to one step's model inputs (transformers 5.x: the KV cache travels as `cache`).

        Prefill (empty cache): prompt tuning/p-tuning replace input_ids by [prompt; embeddings], prefix tuning
        writes the prefixes into the generation cache. Every step: V ones in front of the attention mask;
        prefix tuning shifts position ids past the prefix, the others drop them as forward does.
        """
        config = self._config()
        key = "past_key_values" if "past_key_values" in inputs else "cache"  # older transformers say past_key_values
        cache = inputs.get(key)
        input_ids = inputs.get("input_ids")
        if input_ids is None:
            raise ValueError("generate with prompt learning needs input_ids (inputs_embeds alone are not supported)")
        batch = input_ids.shape[0]
        mask = inputs.get("attention_mask")
        if mask is not None:
            if isinstance(mask, dict) or mask.dim() != 2:
                raise ValueError("generate with prompt learning needs a 2-D attention mask of shape (batch, length)")
            inputs["attention_mask"] = torch.cat((mask.new_ones(batch, config.num_virtual_tokens), mask), dim=1)
        self._adjust_ids(config, inputs, warn=False)
        if cache is not None and cache.get_seq_length():
            return inputs  # decoding: the prompt is in the cache already
        if config.peft_type.value == "PREFIX_TUNING":
            prefix = self.past_key_values(batch)
            if cache is None:
                inputs[key] = prefix
            else:  # fill generate's own cache object, which it carries on to the next steps
                for layer in range(len(prefix)):
                    cache.update(*_layer_kv(prefix, layer), layer)
        else:
            embeds = self.word_embeddings(input_ids)
            inputs["inputs_embeds"] = torch.cat((self.prompts(batch).to(embeds.dtype), embeds), dim=1)
            inputs["input_ids"] = None
        return inputs


def _cache_argument(model: nn.Module) -> str | None:
    """The forward argument that takes a KV cache: `cache` in transformers 5.x, `past_key_values` before; None: no cache."""
    import inspect

    try:
        names = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return next((n for n in ("cache", "past_key_values") if n in names), None)


def _layer_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer of a DynamicCache."""
    entry = cache.layers[layer]
    return entry.keys, entry.values
