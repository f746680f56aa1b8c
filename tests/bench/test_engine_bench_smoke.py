"""bench/engine_bench.py --smoke: the benchmark script runs end to end on the CPU, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "engine_bench.py"


@pytest.mark.oracle
def test_engine_bench_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path), "--profile"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    result = json.loads((tmp_path / "results.json").read_text())
    assert {"meta_info", "train_info", "summary", "arms"} <= set(result)
    assert not result["failures"]
    arms = result["arms"]
    assert sorted((a["engine"], a["gc"]) for a in arms) == sorted((e, g) for e in ("peft_core", "peft") for g in (False, True))
    for arm in arms:
        assert arm["gc_active"] == arm["gc"]
        assert arm["timed_steps"] == 2 and arm["tokens_per_s"] > 0
        assert arm["initial_adapter_matches_file"]
        assert arm["profile"] is not None and (tmp_path / arm["profile"]["table_file"]).exists()
    # both engines adapt the same modules and start from the same adapter tensors
    for gc in (False, True):
        pair = {a["engine"]: a for a in arms if a["gc"] == gc}
        assert pair["peft_core"]["n_adapted_modules"] == pair["peft"]["n_adapted_modules"] > 0
        assert pair["peft_core"]["trainable_params"] == pair["peft"]["trainable_params"]
        assert pair["peft_core"]["initial_adapter_abs_sum"] == pytest.approx(pair["peft"]["initial_adapter_abs_sum"])
        gate = result["summary"]["gc_on" if gc else "gc_off"]["gate"]
        assert gate["steps"] == 2 and gate["pass_rel_1pct"], gate

    table = (tmp_path / "results.md").read_text()
    assert "| off |" in table and "| on |" in table
