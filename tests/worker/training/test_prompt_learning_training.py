"""The real trainer (run_training) with each prompt-learning method on the demo model.

The method section is built like the studio's form builds it (the config's JSON schema defaults, minus
the fields the studio fills itself); the run must lower the loss, and the adapter it writes must load in
peft_core and in peft with equal outputs that differ from the base model's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import peft_core
from app.jobspec import parse_job_spec
from app.services.catalog import method_schema, studio_managed_fields
from worker.training import TrainingError, run_training

from .conftest import Recorder, demo_spec

TRAINING = {"max_steps": 24, "batch_size": 8, "learning_rate": 1e-1, "lr_scheduler": "constant", "warmup_ratio": 0, "eval_every": 4, "eval_fraction": 0.05}


def form_method(peft_type: str, **changes: Any) -> dict[str, Any]:
    """What the studio's method form submits: every schema default, then the person's changes."""
    props = method_schema(peft_type)["properties"]
    method = {name: prop["default"] for name, prop in props.items() if name not in studio_managed_fields()}
    return {"peft_type": peft_type, **method, **changes}


def _spec(method: dict[str, Any], **training: Any) -> dict[str, Any]:
    spec = demo_spec(**{**TRAINING, **training})
    spec["method"] = method
    parse_job_spec(spec)  # the studio validates before queueing
    return spec


CASES = {
    "prompt-tuning-text-init": lambda demo: form_method(
        "PROMPT_TUNING", num_virtual_tokens=8, prompt_tuning_init="TEXT", prompt_tuning_init_text="Answer the question:", tokenizer_name_or_path=str(demo)
    ),
    "prefix-tuning": lambda demo: form_method("PREFIX_TUNING", num_virtual_tokens=8),
    "prefix-tuning-projection": lambda demo: form_method("PREFIX_TUNING", num_virtual_tokens=8, prefix_projection=True),
    "p-tuning-mlp": lambda demo: form_method("P_TUNING", num_virtual_tokens=8),
    "p-tuning-lstm": lambda demo: form_method("P_TUNING", num_virtual_tokens=8, encoder_reparameterization_type="LSTM", encoder_hidden_size=32),
}


@pytest.mark.oracle
@pytest.mark.parametrize("case", list(CASES))
def test_a_demo_run_trains_the_prompt_and_the_adapter_loads_in_peft(case: str, tmp_path, demo_folder) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    method = CASES[case](demo_folder)
    rec = Recorder()
    result = run_training(_spec(method), tmp_path, rec.hooks())
    evals = [row["eval_loss"] for row in rec.metrics if row["eval_loss"] is not None]
    assert result["steps"] == 24 and len(evals) == 6
    # a fixed held-out set: its loss falls at every evaluation (prompt tuning moves slowly, about 0.09 here)
    assert all(later < earlier for earlier, later in zip(evals, evals[1:])) and evals[-1] < evals[0] - 0.05, evals
    assert any(f"method {method['peft_type']}: training" in line for line in rec.logs)

    adapter = tmp_path / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == method["peft_type"] and config["task_type"] == "CAUSAL_LM" and config["inference_mode"] is True
    assert config["num_virtual_tokens"] == 8 and config["token_dim"] and config["num_layers"]

    base = AutoModelForCausalLM.from_pretrained(demo_folder).eval()
    ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), adapter)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), adapter).eval()
    assert list(peft_core.load_peft_weights(adapter)) == ["prompt_embeddings"]
    inputs = {"input_ids": torch.tensor([[1, 40, 41, 42, 43, 44, 2, 10]])}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        plain = base(**inputs).logits
        a, b = ours(**inputs).logits, theirs(**inputs).logits
    torch.testing.assert_close(a, b)
    assert (a[:, -plain.shape[1] :] - plain).abs().max() > 1e-3  # the prompt is not a no-op
    generated = ours.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 12)


def test_resuming_a_reparameterised_prompt_is_refused_in_words(tmp_path, data_dir) -> None:
    """A checkpoint holds the encoder's output only, so a p-tuning run cannot resume its MLP from one."""
    spec = _spec(form_method("P_TUNING", num_virtual_tokens=4), max_steps=4, checkpoint_every=2)
    run_training(spec, tmp_path, Recorder().hooks())
    checkpoints = sorted((tmp_path / "checkpoints").glob("step-*"))
    assert checkpoints, "the run wrote no checkpoint"
    with pytest.raises(TrainingError, match="cannot be rebuilt"):
        run_training(spec, tmp_path, Recorder().hooks(), resume_from=checkpoints[0])


def test_a_prompt_tuning_run_resumes_from_its_checkpoint(tmp_path, data_dir) -> None:
    """Prompt tuning's checkpoint is its whole adapter (the prompt table), so a run resumes from it."""
    spec = _spec(form_method("PROMPT_TUNING", num_virtual_tokens=4), max_steps=4, checkpoint_every=2)
    first = Recorder()
    run_training(spec, tmp_path / "a", first.hooks())
    resumed = Recorder()
    result = run_training(spec, tmp_path / "b", resumed.hooks(), resume_from=tmp_path / "a" / "checkpoints" / "step-2")
    assert result["steps"] == 4 and [row["step"] for row in resumed.metrics] == [3, 4]
    assert [row["loss"] for row in resumed.metrics] == pytest.approx([row["loss"] for row in first.metrics[2:]], rel=1e-4)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_prompt_learning_jobs_run_through_the_real_worker(request, tmp_path) -> None:
    """Through the studio's job service and a real Celery worker: one job per prompt method succeeds, and
    each adapter loads in peft with peft_core's outputs."""
    from app.db.session import session_scope
    from app.services import jobs
    from tests.support.stack import running_stack

    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    with running_stack(request, tmp_path, "sqlite+filesystem", trainer="worker.training:run_training", STUDIO_LEASE_SECONDS="10") as stack:
        ids = {}
        for peft_type in ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING"):
            spec = {"name": peft_type, "base_model": "demo", "method": form_method(peft_type, num_virtual_tokens=4), "training": {"max_steps": 3, "checkpoint_every": 3}}
            with session_scope(stack.settings) as session:
                ids[peft_type] = jobs.create_job(session, spec=spec, settings=stack.settings).id
        from worker.training.demo import demo_model_dir

        inputs = {"input_ids": torch.tensor([[5, 9, 14, 3, 27, 8]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}
        for peft_type, job_id in ids.items():
            job = stack.wait_status(job_id, "succeeded", "failed", timeout=300)
            assert job.status == "succeeded", f"{peft_type}: {job.message}\n{job.error_hint}\n{job.log_tail}"
            base = AutoModelForCausalLM.from_pretrained(demo_model_dir(stack.settings.data_dir)).eval()  # the worker built it
            [adapter] = job.artifacts
            assert json.loads((Path(adapter.path) / "adapter_config.json").read_text())["peft_type"] == peft_type
            with torch.no_grad():
                ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), adapter.path)(**inputs).logits
                theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), adapter.path).eval()(**inputs).logits
            torch.testing.assert_close(ours, theirs)
