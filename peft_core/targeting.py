"""Which modules a config adapts.

Rules (the same for every method):
- `target_modules` as a list: a module matches if its full name equals an entry or ends with
  "." + entry. As a string: a regex that must match the full module name (never split into
  characters). "all-linear": every linear-like layer except the model's output head.
- `exclude_modules` removes matches, with the same list/regex rules.
- `layers_to_transform` keeps only modules inside those layer indices; the index is the number after
  `layers_pattern` (e.g. "layers.3.") or, without a pattern, the first numeric path segment.
- Modules inside a `modules_to_save` copy are never targeted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch.nn as nn

from .base_layers import is_linear_like
from .errors import ConfigError, NoMatchingModulesError
from .layer import AdapterLayer
from .matching import layer_index, name_matches  # noqa: F401  (torch-free; re-exported for callers)

ALL_LINEAR = "all-linear"

def output_head_names(model: nn.Module) -> set[str]:
    """Names of modules that produce the model's final output (never adapted by all-linear)."""
    names: set[str] = set()
    get_out = getattr(model, "get_output_embeddings", None)
    head = None
    if callable(get_out):
        try:
            head = get_out()
        except (NotImplementedError, AttributeError):
            head = None
    for name, module in model.named_modules():
        if head is not None and module is head:
            names.add(name)
        if name.split(".")[-1] in ("lm_head", "score", "classifier", "qa_outputs") and name.count(".") <= 1:
            names.add(name)
    return names


def resolve_targets(config, model: nn.Module, skip_prefixes: Iterable[str] = ()) -> list[str]:
    """Full names of the modules this config adapts; raises with a helpful message when none match."""
    targets = config.target_modules
    if targets is None:
        raise ConfigError(type(config).__name__, ["target_modules: not set and no default known for this model"])
    skip = tuple(skip_prefixes)
    heads = output_head_names(model) if targets == ALL_LINEAR else set()
    chosen: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if targets == ALL_LINEAR:
            wrapped = getattr(module, "base_layer", None) if isinstance(module, AdapterLayer) else None
            if not is_linear_like(wrapped if wrapped is not None else module) or name in heads:
                continue
        elif not name_matches(name, targets):
            continue
        if config.exclude_modules is not None and name_matches(name, config.exclude_modules):
            continue
        wanted = getattr(config, "layers_to_transform", None)  # not every method has layer selection
        if wanted is not None:
            wanted = [wanted] if isinstance(wanted, int) else wanted
            if layer_index(name, config.layers_pattern) not in wanted:
                continue
        chosen.append(name)
    if not chosen:
        raise NoMatchingModulesError(_no_match_message(config, model))
    return chosen


def _no_match_message(config, model: nn.Module) -> str:
    targets = config.target_modules
    named = [n for n, m in model.named_modules() if n and not list(m.children())]
    leaf_names = sorted({n.split(".")[-1] for n in named})
    sample = ", ".join(leaf_names[:25]) + (" ..." if len(leaf_names) > 25 else "")
    is_regex = isinstance(targets, str) and targets != ALL_LINEAR
    how = "regex (full match)" if is_regex else "target_modules"
    extra = ""
    if getattr(config, "layers_to_transform", None) is not None:
        extra = f" within layers {config.layers_to_transform} (layers_pattern {config.layers_pattern!r})"
    if config.exclude_modules is not None:
        extra += f" after excluding {config.exclude_modules!r}"
    hint = ""
    if is_regex and named:  # the usual mistake: a bare name as a string, which must match the whole path
        as_list = [targets] if re.fullmatch(r"[\w.]+", targets) else [named[0].split(".")[-1]]
        hint = (
            f". A string is a regex that must match the whole module path, e.g. {named[0]!r}; "
            f"to match by name or dotted suffix, pass a list such as {as_list!r}"
        )
    return (
        f"{how} {targets!r} matched no module of {type(model).__name__}{extra}. "
        f"Module names in this model include: {sample}{hint}"
    )


def default_targets_for(model: nn.Module, table: dict[str, list[str] | str]) -> list[str] | str | None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        return None
    found = table.get(model_type)
    return list(found) if isinstance(found, list) else found


def check_unmatched_entries(config, chosen: list[str]) -> list[str]:
    """List entries of target_modules that matched nothing (a typo hides behind another match)."""
    targets = config.target_modules
    if not isinstance(targets, list):
        return []
    return [t for t in targets if not any(name_matches(n, [t]) for n in chosen)]
