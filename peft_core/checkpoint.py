"""Adapter state dicts and files in PEFT's exact format.

Keys are derived from the model's structure, never from name substrings: each adapter-holding module
lists its tensors for an adapter, and the adapter name is removed from the path. Loading builds the same
map and inverts it, so save and load are symmetric for every tuner:

    in memory   base_model.model.<path>.lora_A.default.weight      -> on disk <...>.lora_A.weight
                base_model.model.<path>.lora_embedding_A.default    -> on disk <...>.lora_embedding_A
                base_model.model.<path>.modules_to_save.default.w   -> on disk base_model.model.<path>.w
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import torch
import torch.nn as nn

from .auxiliary import ModulesToSaveWrapper
from .errors import CheckpointError
from .hub import resolve_file
from .layer import AdapterLayer
from .targeting import ALL_LINEAR, name_matches
from .tuner_model import adapter_modules

SAFETENSORS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
FALLBACK_EMBEDDING_NAMES = ("embed_tokens", "lm_head")  # peft's names, for models that cannot say which
PROMPT_EMBEDDINGS = "prompt_embeddings"  # prompt learning's one checkpoint key (no prefix), as peft


def strip_adapter_name(local_key: str, adapter_name: str, module: nn.Module) -> str:
    """Remove the adapter segment from a module-local key (and the wrapper infix for modules_to_save)."""
    parts = local_key.split(".")
    if isinstance(module, ModulesToSaveWrapper):
        return ".".join(parts[2:])
    if parts == [adapter_name]:  # a store named for its tensor, holding one per adapter (VeRA's base_model.vera_A)
        return ""
    if adapter_name in parts[1:]:  # right after the container path: lora_A.<a>.weight, token_adapter.delta.<a>
        del parts[parts.index(adapter_name, 1)]
    return ".".join(parts)


def _config_of(model: nn.Module, adapter_name: str) -> Any:
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict) and adapter_name in configs:
        return configs[adapter_name]
    for m in model.modules():
        c = getattr(m, "peft_config", None)
        if isinstance(c, dict) and adapter_name in c:
            return c[adapter_name]
    return None


def _prompt_learning_model(model: nn.Module) -> Any:
    """The PromptLearningModel of a PeftModel (or the model itself), else None."""
    from .prompt_learning import PromptLearningModel

    for candidate in (model, getattr(model, "_modules", {}).get("base_model")):
        if isinstance(candidate, PromptLearningModel):
            return candidate
    return None


def adapter_tensor_map(model: nn.Module, adapter_name: str = "default", save_embedding_layers: bool | str = "auto") -> dict[str, torch.Tensor]:
    """Saved key -> live tensor for one adapter of `model` (a PeftModel or an injected plain model).

    Prompt learning saves one tensor, `prompt_embeddings`: the prompt encoder's output (computed, not live).
    """
    prompt_model = _prompt_learning_model(model)
    if prompt_model is not None:
        if adapter_name not in prompt_model.peft_config:
            return {}
        return {PROMPT_EMBEDDINGS: prompt_model.prompt_embedding_to_save(adapter_name), **prompt_model.saved_module_tensors(adapter_name)}
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in adapter_modules(model):
        if adapter_name not in module.adapter_names:
            continue
        for local_key, tensor in module.adapter_parameters(adapter_name).items():
            key = strip_adapter_name(local_key, adapter_name, module)
            out[".".join(part for part in (mod_name, key) if part)] = tensor
        for local_key, tensor in getattr(module, "extra_checkpoint_tensors", lambda _n: {})(adapter_name).items():
            out[f"{mod_name}.{local_key}" if mod_name else local_key] = tensor
    config = _config_of(model, adapter_name)
    bias = getattr(config, "bias", "none")
    params = dict(model.named_parameters())
    if bias == "all":
        for name, p in params.items():
            if name.endswith(".bias") and name not in out and not _is_other_adapter(name, adapter_name, model):
                out[name] = p
    elif isinstance(bias, str) and bias.endswith("_only"):
        for mod_name, module in adapter_modules(model):
            if isinstance(module, AdapterLayer) and adapter_name in module.adapter_names and getattr(module.base_layer, "bias", None) is not None:
                out[f"{mod_name}.base_layer.bias"] = module.base_layer.bias
    for key, weight in embedding_tensors(model, adapter_name, config, save_embedding_layers).items():
        out.setdefault(key, weight)
    return out


def _is_other_adapter(name: str, adapter_name: str, model: nn.Module) -> bool:
    configs = _all_adapter_names(model)
    return any(f".{other}." in name or name.endswith(f".{other}") for other in configs if other != adapter_name)


def _all_adapter_names(model: nn.Module) -> list[str]:
    for m in model.modules():
        c = getattr(m, "peft_config", None)
        if isinstance(c, dict):
            return list(c)
    return []


def embedding_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's input and output embedding modules by name, found from its structure.

    transformers models say which modules they are (get_input_embeddings / get_output_embeddings); where
    an adapter layer wraps one, the wrapper's name is given. Models that cannot say fall back to the
    names embed_tokens and lm_head.
    """
    wanted: list[nn.Module] = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            found = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError):
            continue
        if isinstance(found, nn.Module):
            wanted.append(found)
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{outer}.") for outer in layers):
            continue
        chain = [module]
        while isinstance(chain[-1], AdapterLayer):
            chain.append(chain[-1].base_layer)
        if any(m is w for m in chain for w in wanted) or (not wanted and name.split(".")[-1] in FALLBACK_EMBEDDING_NAMES):
            layers[name] = module
    return layers


def _embedding_weight(name: str, module: nn.Module) -> tuple[str, torch.Tensor] | None:
    """(key, tensor) of the full weight under an embedding module: `<p>.weight`, or `<p>.base_layer.weight`
    through each adapter layer wrapping it. A modules_to_save copy is saved on its own already."""
    if isinstance(module, ModulesToSaveWrapper):
        return None
    path = name
    while isinstance(module, AdapterLayer):
        module, path = module.base_layer, f"{path}.base_layer"
    weight = getattr(module, "weight", None)
    return (f"{path}.weight", weight) if isinstance(weight, nn.Parameter) else None


def _targets_embedding(config: Any, name: str, module: nn.Module, adapter_name: str) -> bool:
    """Whether this adapter adapts the embedding module itself: it is wrapped for this adapter and its
    name matches target_modules in any form (bare, qualified like "model.embed_tokens", or a regex)."""
    targets = getattr(config, "target_modules", None)
    if not getattr(config, "saves_targeted_embeddings", True):  # e.g. trainable tokens: the rows are the adapter
        return False
    if not isinstance(module, AdapterLayer) or adapter_name not in module.adapter_names or targets in (None, ALL_LINEAR):
        return False
    return name_matches(name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name, targets)


def _vocab_size(config: Any) -> int | None:
    """vocab_size of a transformers config (object or dict), looking into text_config for multimodal ones."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
    value = get("vocab_size")
    if value is None and get("text_config") is not None:
        return _vocab_size(get("text_config"))
    return value if isinstance(value, int) else None


def _local_base_config(base: str, revision: str | None) -> str | None:
    """Path of the base model's config.json on this machine (its folder or the Hub cache); never downloads."""
    candidate = os.path.join(base, "config.json")
    if os.path.isfile(candidate):
        return candidate
    if os.path.isdir(base):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(base, "config.json", revision=revision)
    except (ImportError, ValueError):  # no huggingface_hub, or not a valid repo id
        return None
    return found if isinstance(found, str) else None


def _vocab_resized(config: Any, model: nn.Module) -> bool:
    """Whether the model's vocabulary differs from its base model's, judged from a local config.json only
    (offline-safe: an air-gapped save must not stall on the Hub, peft issue #3211)."""
    vocab = _vocab_size(getattr(model, "config", None))
    base = getattr(config, "base_model_name_or_path", None)
    if not base or vocab is None:
        return False
    path = _local_base_config(base, getattr(config, "revision", None))
    base_vocab = None
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                base_vocab = _vocab_size(json.load(fh))
        except (OSError, ValueError):
            path = None
    if path is None:
        warnings.warn(
            f"save_embedding_layers='auto': no readable config.json of the base model {base!r} on this machine, so "
            "peft_core cannot tell whether the vocabulary was resized; if it was, pass save_embedding_layers=True "
            "so the new embedding rows are saved with the adapter",
            stacklevel=5,
        )
        return False
    return base_vocab is not None and base_vocab != vocab


def embedding_tensors(model: nn.Module, adapter_name: str, config: Any, save_embedding_layers: bool | str) -> dict[str, torch.Tensor]:
    """Full embedding weights saved beside the adapter, as peft's `save_embedding_layers` asks.

    True: the input and output embeddings. "auto": the embeddings this adapter targets (a qualified name
    counts too, unlike peft 0.21, issue #3585), or both when the vocabulary was resized relative to the
    base model. False: none.
    """
    if save_embedding_layers not in (True, False, "auto"):
        raise ValueError(f"save_embedding_layers must be True, False or 'auto', got {save_embedding_layers!r}")
    if save_embedding_layers is False:
        return {}
    layers = embedding_layers(model)
    if save_embedding_layers == "auto":
        if config is None:
            return {}
        if not _vocab_resized(config, model):
            layers = {n: m for n, m in layers.items() if _targets_embedding(config, n, m, adapter_name)}
    out: dict[str, torch.Tensor] = {}
    for name, module in layers.items():
        found = _embedding_weight(name, module)
        if found is not None:
            out[found[0]] = found[1]
    return out


def get_peft_model_state_dict(
    model: nn.Module, state_dict: dict | None = None, adapter_name: str = "default", save_embedding_layers: bool | str = "auto"
) -> dict[str, torch.Tensor]:
    """The adapter's tensors under their PEFT checkpoint keys (detached, on their current device)."""
    state = {k: v.detach() for k, v in adapter_tensor_map(model, adapter_name, save_embedding_layers).items()}
    config = _config_of(model, adapter_name)
    if config is not None:  # a method may store a reduced form (AdaLoRA: only the kept ranks)
        from .registry import spec_for_config

        finish = getattr(spec_for_config(config).layer_module, "saved_state_dict", None)
        if finish is not None:
            state = finish(model, config, adapter_name, state)
    return state


def set_peft_model_state_dict(model: nn.Module, peft_model_state_dict: dict[str, torch.Tensor], adapter_name: str = "default") -> tuple[list[str], list[str]]:
    """Copy checkpoint tensors into the model's adapter; returns (missing_keys, unexpected_keys).

    Accepts keys with or without the `base_model.model.` prefix. Shape mismatches raise, listing all.
    """
    prompt_model = _prompt_learning_model(model)
    if prompt_model is not None:
        return _load_prompt_learning(prompt_model, peft_model_state_dict, adapter_name)
    config = _config_of(model, adapter_name)
    if config is not None:  # a method may need to fit a reduced saved form to the model (AdaLoRA: resuming a run)
        from .registry import spec_for_config

        prepare = getattr(spec_for_config(config).layer_module, "loaded_state_dict", None)
        if prepare is not None:
            peft_model_state_dict = prepare(model, config, adapter_name, peft_model_state_dict)
    targets = adapter_tensor_map(model, adapter_name, save_embedding_layers=False)
    params = dict(model.named_parameters(remove_duplicate=False))  # tied weights load under either name
    has_prefix = any(k.startswith(PEFT_PREFIX) for k in params)
    loaded: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    for raw_key, value in peft_model_state_dict.items():
        key = raw_key
        if has_prefix and not key.startswith(PEFT_PREFIX) and key not in targets:  # tuner-level keys: base_model.vera_A
            key = PEFT_PREFIX + key
        elif not has_prefix and key.startswith(PEFT_PREFIX):
            key = key[len(PEFT_PREFIX):]
        dest = targets.get(key)
        if dest is None:
            dest = params.get(key)
        if dest is None:
            unexpected.append(raw_key)
            continue
        if tuple(dest.shape) != tuple(value.shape):
            mismatched.append(f"{raw_key}: checkpoint {tuple(value.shape)} vs model {tuple(dest.shape)}")
            continue
        with torch.no_grad():
            dest.copy_(value.to(device=dest.device, dtype=dest.dtype))
        loaded.add(key)
    if mismatched:
        raise CheckpointError("checkpoint tensors do not fit the model (was it trained on another base model or rank?):\n  " + "\n  ".join(mismatched))
    missing = [k for k in targets if k not in loaded]
    return missing, unexpected


def _load_prompt_learning(prompt_model: Any, state: dict[str, torch.Tensor], adapter_name: str) -> tuple[list[str], list[str]]:
    """`prompt_embeddings` into the prompt encoder, task-head copies (base_model.<path>.<tensor>) into theirs."""
    heads = prompt_model.saved_module_tensors(adapter_name)
    missing = [k for k in (PROMPT_EMBEDDINGS, *heads) if k not in state]
    unexpected = [k for k in state if k != PROMPT_EMBEDDINGS and k not in heads]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(t.shape)}" for k, t in heads.items() if k in state and state[k].shape != t.shape]
    if mismatched:
        raise CheckpointError("checkpoint tensors do not fit the model (was it trained on another base model?):\n  " + "\n  ".join(mismatched))
    if PROMPT_EMBEDDINGS in state:
        prompt_model.load_prompt_embeddings(adapter_name, state[PROMPT_EMBEDDINGS])
    with torch.no_grad():
        for key, dest in heads.items():
            if key in state:
                dest.copy_(state[key].to(device=dest.device, dtype=dest.dtype))
    return missing, unexpected


def save_adapter_weights(state_dict: dict[str, torch.Tensor], directory: str, safe_serialization: bool = True) -> str:
    os.makedirs(directory, exist_ok=True)
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
        t = v.detach().cpu() if v.device.type != "cpu" else v.detach()
        if ptr in seen:  # safetensors refuses tensors that share storage
            t = t.clone()
        seen.add(ptr)
        tensors[k] = t.contiguous()
    if safe_serialization:
        from safetensors.torch import save_file

        path = os.path.join(directory, SAFETENSORS_NAME)
        save_file(tensors, path, metadata={"format": "pt"})
    else:
        path = os.path.join(directory, WEIGHTS_NAME)
        torch.save(tensors, path)
    return path


def load_peft_weights(model_id: str | os.PathLike, device: str | torch.device | None = None, subfolder: str | None = None, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """Read adapter_model.safetensors (or .bin) from a folder or Hub repo."""
    path = resolve_file(model_id, SAFETENSORS_NAME, subfolder=subfolder, required=False, **hub_kwargs)
    if path is not None:
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(device) if device is not None else "cpu")
        except Exception as exc:  # safetensors raises its own error type on corrupt files
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    path = resolve_file(model_id, WEIGHTS_NAME, subfolder=subfolder, required=False, **hub_kwargs)
    if path is None:
        where = os.path.join(os.fspath(model_id), subfolder) if subfolder else os.fspath(model_id)
        hint = ""
        if not os.path.isdir(os.fspath(model_id)):  # a Hub repo: absent there, or offline and not cached
            hint = "; if this is a Hub repo, check the id, or download it where there is network (HF_HUB_OFFLINE hides uncached files)"
        raise CheckpointError(f"no adapter weights in {where}: expected {SAFETENSORS_NAME} or {WEIGHTS_NAME}{hint}")
    try:
        return torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable adapter weights file: {exc}") from exc


def warn_missing(missing: list[str], unexpected: list[str], where: str) -> None:
    if missing:
        warnings.warn(f"Found missing adapter keys while loading {where}: {missing[:10]}{' ...' if len(missing) > 10 else ''}", stacklevel=3)
    if unexpected:
        warnings.warn(f"ignored checkpoint keys that this model has no place for ({where}): {unexpected[:10]}", stacklevel=3)
