"""The torch side of peft_core.shapes: describe a real model as a ModelShape.

Used by tests (the torch-free counts are checked against real adapters through it) and by anything
that holds a loaded model and wants a config's count without adapting it.
"""

from __future__ import annotations

import torch.nn as nn

from .base_layers import view_for
from .shapes import ModelShape, ModuleShape
from .targeting import output_head_names


def _module_shape(name: str, module: nn.Module) -> ModuleShape:
    own_bias = module._parameters.get("bias")
    numel = sum(p.numel() for p in module.parameters())
    bias = own_bias.numel() if own_bias is not None else 0
    params = tuple((n, tuple(p.shape)) for n, p in module.named_parameters(recurse=False))
    transposed = bool(getattr(module, "is_transposed", False))
    view = view_for(module)
    if view is None or view.kind not in ("linear", "conv", "embedding"):
        return ModuleShape(name, "module", bias=bias, numel=numel, parameters=params, transposed=transposed)
    kernel = tuple(getattr(module, "kernel_size", ())) if view.kind == "conv" else ()
    groups = int(getattr(module, "groups", 1)) if view.kind == "conv" else 1
    return ModuleShape(name, view.kind, view.in_features, view.out_features, kernel, groups, bias, numel, params, transposed)


def _name_of(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((n for n, m in model.named_modules() if m is target and n), None)


def _embeddings(model: nn.Module) -> tuple[nn.Module | None, nn.Module | None]:
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        try:
            found.append(fn() if callable(fn) else None)
        except (NotImplementedError, AttributeError):
            found.append(None)
    return found[0], found[1]


def describe_model(model: nn.Module) -> ModelShape:
    """Every named module with its kind and sizes, the output heads, input embedding and weight ties."""
    modules = tuple(_module_shape(name, m) for name, m in model.named_modules() if name)
    emb, head = _embeddings(model)
    emb_name, head_name = _name_of(model, emb), _name_of(model, head)
    tied: tuple[tuple[str, str], ...] = ()
    if emb_name and head_name and getattr(emb, "weight", None) is getattr(head, "weight", 0):
        tied = ((emb_name, head_name),)
    cfg = getattr(model, "config", None)

    def size(*keys: str) -> int | None:
        return next((int(getattr(cfg, k)) for k in keys if isinstance(getattr(cfg, k, None), int)), None)

    return ModelShape(
        modules=modules,
        model_type=getattr(cfg, "model_type", None),
        hidden_size=size("hidden_size", "n_embd", "d_model"),
        num_layers=size("num_hidden_layers", "n_layer", "num_layers"),
        num_attention_heads=size("num_attention_heads", "n_head", "num_heads"),
        num_key_value_heads=size("num_key_value_heads", "num_attention_heads", "n_head"),
        vocab_size=size("vocab_size"),
        is_encoder_decoder=bool(getattr(cfg, "is_encoder_decoder", False)),
        output_heads=frozenset(output_head_names(model)),
        input_embedding=emb_name,
        tied_modules=tied,
        extra={"head_dim": size("head_dim")},  # prefix tuning sizes its key/value prefixes per KV head
    )
