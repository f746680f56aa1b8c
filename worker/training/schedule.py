"""The learning-rate schedule: a pure function of the step, so a checkpoint needs only the step number.

    warm-up  steps 0 .. W-1:   lr rises linearly to the peak, reaching it on step W-1
    decay    steps W .. T-1:   cosine or linear towards 0 (never reaching it: the last step still learns),
                               or constant at the peak
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def lr_at(step: int, *, peak: float, total_steps: int, warmup: int, kind: str) -> float:
    """Learning rate of optimizer step `step` (0-based) out of `total_steps`."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler {kind!r}; use one of {', '.join(SCHEDULES)}")
    if step < warmup:
        return peak * (step + 1) / warmup
    if kind == "constant":
        return peak
    progress = (step - warmup) / max(1, total_steps - warmup)
    if kind == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
