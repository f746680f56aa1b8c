"""worker.training.schedule: warm-up then cosine / linear / constant, as a pure function of the step."""

from __future__ import annotations

import math

import pytest

from worker.training.schedule import lr_at, warmup_steps


def curve(kind: str, total: int = 10, warmup: int = 2, peak: float = 1.0) -> list[float]:
    return [lr_at(s, peak=peak, total_steps=total, warmup=warmup, kind=kind) for s in range(total)]


def test_warmup_rises_linearly_to_the_peak():
    assert curve("constant")[:3] == [0.5, 1.0, 1.0]
    assert warmup_steps(100, 0.05) == 5 and warmup_steps(10, 0.0) == 0 and warmup_steps(7, 0.1) == 1


def test_cosine_starts_at_the_peak_and_decays_without_reaching_zero():
    lrs = curve("cosine")
    assert lrs[2] == 1.0
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[-1] > 0
    assert lrs[6] == pytest.approx(0.5)  # half-way through the decay: cos(pi/2)
    assert lr_at(9, peak=2e-4, total_steps=10, warmup=0, kind="cosine") == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * 0.9)))


def test_linear_and_constant():
    assert curve("linear", total=6, warmup=0) == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert curve("constant", warmup=0) == [1.0] * 10


def test_single_step_runs_and_unknown_schedules():
    assert lr_at(0, peak=1e-3, total_steps=1, warmup=0, kind="cosine") == 1e-3
    assert lr_at(0, peak=1e-3, total_steps=1, warmup=1, kind="cosine") == 1e-3
    with pytest.raises(ValueError, match="unknown lr_scheduler"):
        lr_at(0, peak=1.0, total_steps=1, warmup=0, kind="step")
