"""Per-module overrides (`rank_pattern`, `alpha_pattern`, ...): matching and validation, shared by every
tuner that has them. Torch-free, so configs can validate in the web process."""

from __future__ import annotations

import re
from typing import Any


def pattern_value(patterns: dict[str, Any], module_name: str, default: Any) -> Any:
    """Value of the first pattern that matches the end of the module name at a '.' boundary."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(?:.*\.)?(?:{key})", module_name):
            return value
    return default


def pattern_problems(rank_pattern: dict[str, Any], alpha_pattern: dict[str, Any]) -> list[str]:
    """Config problems of rank/alpha overrides: ranks must be positive, keys valid regexes."""
    problems = [f"rank_pattern: rank for {key!r} must be > 0, got {value}" for key, value in rank_pattern.items() if value <= 0]
    for key in {**rank_pattern, **alpha_pattern}:
        try:
            re.compile(key)
        except re.error as exc:
            problems.append(f"rank_pattern/alpha_pattern: {key!r} is not a valid regex ({exc})")
    return problems
