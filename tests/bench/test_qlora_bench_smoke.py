"""bench/engine_bench.py --smoke --quant nf4: the QLoRA arms run end to end on the CPU (two small processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("bitsandbytes")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "engine_bench.py"


@pytest.mark.oracle
def test_qlora_bench_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--quant", "nf4", "--gc", "on", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    result = json.loads((tmp_path / "results.json").read_text())
    assert not result["failures"] and result["train_info"]["quant"] == "nf4"
    arms = {a["engine"]: a for a in result["arms"]}
    assert sorted(arms) == ["peft", "peft_core"]
    for arm in arms.values():
        assert arm["gc"] and arm["gc_active"]
        assert arm["timed_steps"] == 2 and arm["tokens_per_s"] > 0
        assert arm["initial_adapter_matches_file"]
        quant = arm["quant"]
        assert quant["quant"] == "nf4" and quant["quantized_linears"] == arm["n_adapted_modules"] > 0
        # prepare_model_for_kbit_training left only 4-bit weights and fp32 parameters (adapters, norms, embeddings)
        assert {k.split(":")[1] for k in quant["param_dtypes_after_prepare"]} == {"uint8", "float32"}
    ours, theirs = arms["peft_core"], arms["peft"]
    assert ours["quant"]["param_dtypes_after_prepare"] == theirs["quant"]["param_dtypes_after_prepare"]
    assert ours["trainable_params"] == theirs["trainable_params"]
    assert ours["initial_adapter_abs_sum"] == pytest.approx(theirs["initial_adapter_abs_sum"])
    gate = result["summary"]["gc_on"]["gate"]
    assert gate["steps"] == 2 and gate["pass_rel_1pct"], gate
    assert "nf4 + double quant" in (tmp_path / "results.md").read_text()
