"""Module-name matching rules shared by targeting (torch) and shape-level counting (torch-free).

- A list entry matches a module whose full name equals it or ends with "." + entry.
- A string is a regex that must match the full module name (never split into characters).
- A layer index is the number after `layers_pattern` (e.g. "layers.3.") or, without a pattern, the
  first numeric path segment.
"""

from __future__ import annotations

import re


def layer_index(module_name: str, layers_pattern: list[str] | str | None) -> int | None:
    """Index of the transformer layer a module belongs to, or None if it is in no numbered layer."""
    if layers_pattern is None:
        for part in module_name.split("."):
            if part.isdigit():
                return int(part)
        return None
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern)
    for pattern in patterns:
        m = re.search(rf"(?:^|\.){re.escape(pattern)}\.(\d+)(?:\.|$)", module_name)
        if m:
            return int(m.group(1))
    return None


def name_matches(module_name: str, spec: list[str] | set[str] | str) -> bool:
    """List = exact name or dotted suffix; string = full-match regex."""
    if isinstance(spec, str):
        return re.fullmatch(spec, module_name) is not None
    return any(module_name == entry or module_name.endswith("." + entry) for entry in spec)
