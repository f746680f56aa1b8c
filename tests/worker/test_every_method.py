"""A studio demo job per registered method, through the real trainer (worker.training.run_training).

The method section is what the studio's form submits: the config's JSON schema defaults, plus the few
settings below that keep a run small on the demo model (or that a method needs on it). New methods are
picked up from the registry automatically; a method missing from SMALL runs on its schema defaults.
Each run must keep the loss finite, and its adapter must load in peft_core and in peft with equal
outputs that differ from the base model's. (tests/worker/test_real_trainer.py covers the Celery path.)
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import torch

import peft_core
from app.jobspec import parse_job_spec
from app.services.catalog import method_schema, studio_managed_fields
from peft_core.registry import registered_methods
from tests.worker.training.conftest import Recorder, data_dir, demo_folder, demo_spec  # noqa: F401  (fixtures)
from worker.training import run_training

torch.set_num_threads(1)

TRAINING = {"max_steps": 6, "batch_size": 4, "learning_rate": 2e-2, "lr_scheduler": "constant", "warmup_ratio": 0, "eval_every": 3, "eval_fraction": 0.05}

# Settings that keep each run tiny on the demo model (hidden 128); everything else is the schema default.
SMALL: dict[str, dict[str, Any]] = {
    "LORA": {"r": 4},
    "ADALORA": {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 1},  # total_step left empty: the studio fills it
    "VERA": {"r": 16},
    "LOHA": {"r": 4},
    "LOKR": {"r": 4},
    "OFT": {"oft_block_size": 16},
    "BOFT": {"boft_block_size": 16},
    "PROMPT_TUNING": {"num_virtual_tokens": 4},
    "PREFIX_TUNING": {"num_virtual_tokens": 4},
    "P_TUNING": {"num_virtual_tokens": 4},
    "TRAINABLE_TOKENS": {"token_indices": [40, 41, 42, 43, 44]},
}


def form_method(peft_type: str) -> dict[str, Any]:
    """What the studio's method form submits: every schema default, then this file's small settings."""
    props = method_schema(peft_type)["properties"]
    method = {name: prop["default"] for name, prop in props.items() if name not in studio_managed_fields()}
    return {"peft_type": peft_type, **method, **SMALL.get(peft_type, {})}


@pytest.mark.oracle
@pytest.mark.parametrize("peft_type", sorted(registered_methods()))
def test_a_demo_job_trains_and_its_adapter_loads_in_peft(peft_type: str, tmp_path, demo_folder) -> None:  # noqa: F811
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    spec = demo_spec(**TRAINING)
    spec["method"] = form_method(peft_type)
    parse_job_spec(spec)  # the studio validates before queueing
    rec = Recorder()
    result = run_training(spec, tmp_path, rec.hooks())
    assert result["steps"] == TRAINING["max_steps"]
    assert rec.metrics and all(math.isfinite(row["loss"]) for row in rec.metrics)
    assert math.isfinite(result["final_loss"]) and math.isfinite(result["final_eval_loss"])

    adapter = tmp_path / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type and config["inference_mode"] is True
    base = AutoModelForCausalLM.from_pretrained(demo_folder).eval()
    ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), adapter).eval()
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), adapter).eval()
    inputs = {"input_ids": torch.tensor([[1, 40, 41, 42, 43, 44, 2, 10]])}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        plain = base(**inputs).logits
        a, b = ours(**inputs).logits, theirs(**inputs).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (a[:, -plain.shape[1] :] - plain).abs().max() > 1e-4, "training left the adapter a no-op"


def test_adalora_job_fills_total_step_from_the_plan_and_allocates_ranks(tmp_path, data_dir) -> None:  # noqa: F811
    """total_step left empty becomes the plan's step count; the saved rank_pattern keeps target_r per layer."""
    spec = demo_spec(**TRAINING)
    spec["method"] = form_method("ADALORA")
    assert spec["method"]["total_step"] is None
    run_training(spec, tmp_path, Recorder().hooks())
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["total_step"] == TRAINING["max_steps"]
    kept = [sum(mask) for mask in config["rank_pattern"].values()]
    assert kept and sum(kept) == 2 * len(kept) and all(len(mask) == 4 for mask in config["rank_pattern"].values())


@pytest.mark.oracle
def test_an_adalora_job_resumes_after_rank_allocation(tmp_path, demo_folder) -> None:  # noqa: F811
    """A checkpoint written after the first allocation holds only the kept ranks; the run resumes from it and
    its adapter still loads in peft with equal outputs."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    spec = demo_spec(**{**TRAINING, "checkpoint_every": 3})
    spec["method"] = form_method("ADALORA")
    run_training(spec, tmp_path / "first", Recorder().hooks())
    checkpoint = tmp_path / "first" / "checkpoints" / "step-3"
    saved = json.loads((checkpoint / "adapter" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] and not all(all(mask) for mask in saved["rank_pattern"].values())
    resumed = Recorder()
    result = run_training(spec, tmp_path / "second", resumed.hooks(), resume_from=checkpoint)
    assert result["steps"] == TRAINING["max_steps"] and [row["step"] for row in resumed.metrics] == [4, 5, 6]
    assert all(math.isfinite(row["loss"]) for row in resumed.metrics)
    base = AutoModelForCausalLM.from_pretrained(demo_folder).eval()
    adapter = tmp_path / "second" / "adapter"
    ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), adapter).eval()
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), adapter).eval()
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 2, 10]])
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, theirs(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
