"""worker.training.run_training / loop: a demo run end to end, the adapter it writes, cancel, accumulation."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import peft_core
from app.jobspec import TrainingSettings
from worker.training import TrainingCancelled, TrainingError, loop, run_training

from .conftest import Recorder, demo_spec, write_jsonl

ROW_KEYS = {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "padding_share"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One short demo run shared by the tests that look at its results."""
    work = tmp_path_factory.mktemp("run")
    rec = Recorder()
    spec = demo_spec(max_steps=16, batch_size=8, learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0, eval_every=4, eval_fraction=0.05)
    result = run_training(spec, work, rec.hooks())
    return work, rec, result


def test_a_demo_run_lowers_the_loss(trained):
    work, rec, result = trained
    evals = [row["eval_loss"] for row in rec.metrics if row["eval_loss"] is not None]
    assert len(evals) == 4  # steps 4, 8, 12, 16
    assert evals[-1] < evals[0] - 0.4  # about 3.5 -> 2.7 (the untrained model: 3.9)
    losses = [row["loss"] for row in rec.metrics]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    assert result["steps"] == 16 and result["final_eval_loss"] == evals[-1]
    assert result["final_loss"] == rec.metrics[-1]["loss"]
    assert [row["step"] for row in rec.metrics] == list(range(1, 17))
    assert all(set(row) == ROW_KEYS and row["tokens_per_s"] > 0 and row["grad_norm"] > 0 and 0 <= row["padding_share"] < 1 for row in rec.metrics)
    assert rec.progress[-1] == (16, 16) and len(rec.progress) == 16
    assert any("eval loss" in line for line in rec.logs) and rec.logs[-1].startswith("done")


def test_the_adapter_is_peft_format_with_the_tokenizer(trained):
    work, _, result = trained
    adapter = work / "adapter"
    assert result["adapter_dir"] == str(adapter)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / name).is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "demo" and config["task_type"] == "CAUSAL_LM"
    assert not list(work.glob(".adapter-tmp-*"))


@pytest.mark.oracle
def test_the_adapter_loads_in_peft_core_and_in_peft_with_equal_outputs(trained, demo_folder):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    adapter = trained[0] / "adapter"
    base = AutoModelForCausalLM.from_pretrained(demo_folder).eval()
    ours = peft_core.PeftModel.from_pretrained(copy.deepcopy(base), adapter)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), adapter)
    inputs = torch.tensor([[1, 40, 41, 42, 43, 44, 2, 10]])
    with torch.no_grad():
        plain = base(input_ids=inputs).logits
        a, b = ours(input_ids=inputs).logits, theirs(input_ids=inputs).logits
    torch.testing.assert_close(a, b)
    assert (a - plain).abs().max() > 1e-3  # the adapter is not a no-op


def test_should_stop_cancels_within_a_step(tmp_path, data_dir):
    rec = Recorder(stop_before=3)
    with pytest.raises(TrainingCancelled):
        run_training(demo_spec(max_steps=10), tmp_path, rec.hooks())
    assert [s for s, _ in rec.progress] == [1, 2]
    assert sorted(rec.losses()) == [1, 2]  # rows of the finished steps were flushed
    assert not (tmp_path / "adapter").exists()


def test_gradient_accumulation_equals_one_big_batch(tmp_path, data_dir):
    runs = {}
    for batch, accumulation in ((4, 1), (2, 2)):
        rec = Recorder()
        spec = demo_spec(max_steps=3, batch_size=batch, gradient_accumulation_steps=accumulation, learning_rate=3e-3)
        run_training(spec, tmp_path / f"b{batch}", rec.hooks())
        runs[batch] = [rec.losses()[s] for s in (1, 2, 3)]
    assert runs[4] == pytest.approx(runs[2], rel=1e-5)


@pytest.mark.parametrize(
    ("rows", "fmt"),
    [
        ([{"prompt": f"{i} + 1 =", "completion": f" {i + 1}"} for i in range(12)], "prompt_completion"),
        ([{"text": f"The number after {i} is {i + 1}."} for i in range(12)], "text"),
    ],
)
def test_other_formats_train_end_to_end(tmp_path, data_dir, rows, fmt):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    spec = demo_spec(max_steps=2, eval_fraction=0.2)
    spec["dataset"] = {"source": "jsonl", "path": str(path), "format": "auto"}
    rec = Recorder()
    result = run_training(spec, tmp_path / "work", rec.hooks())
    assert result["steps"] == 2 and result["final_eval_loss"] is not None
    assert any(fmt.replace("_", "/") in line for line in rec.logs)


def test_a_bad_dataset_fails_before_any_model_is_loaded(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the dataset was checked")

    monkeypatch.setattr("worker.training.model.load_base_model", no_model)
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, "{not json"])
    spec = demo_spec()
    spec["dataset"] = {"source": "jsonl", "path": str(path)}
    with pytest.raises(TrainingError, match="line 2: not valid JSON"):
        run_training(spec, tmp_path / "work", Recorder().hooks())


def test_an_invalid_spec_lists_its_problems(tmp_path):
    spec = demo_spec(learning_rate=-1)
    spec["method"]["r"] = 0
    with pytest.raises(TrainingError) as info:
        run_training(spec, tmp_path, Recorder().hooks())
    assert "training.learning_rate" in str(info.value) and "method.r" in str(info.value)


def test_metrics_are_handed_over_in_small_batches(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(loop, "FLUSH_ROWS", 3)
    monkeypatch.setattr(loop, "FLUSH_SECONDS", 1e9)
    rec = Recorder()
    run_training(demo_spec(max_steps=7), tmp_path, rec.hooks())
    assert rec.batches == [3, 3, 1]


def test_plan_steps_from_epochs_or_max_steps():
    plan = loop.plan_steps(10, TrainingSettings(epochs=2, batch_size=4, gradient_accumulation_steps=2, warmup_ratio=0.5))
    assert (plan.batches_per_epoch, plan.total_steps, plan.warmup_steps) == (3, 3, 2)
    assert plan.epoch_at(3) == 2.0
    assert loop.plan_steps(10, TrainingSettings(max_steps=50, batch_size=4)).total_steps == 50
    assert loop.plan_steps(10, TrainingSettings(epochs=0.1, batch_size=4)).total_steps == 1


# Fields a method needs beyond its defaults to train the demo model; any other registered method must
# train with its defaults and no change to the trainer.
METHOD_FIELDS = {"TRAINABLE_TOKENS": {"token_indices": [1, 2]}}


@pytest.mark.parametrize("peft_type", sorted(peft_core.registered_methods()))
def test_every_registered_method_trains(tmp_path, data_dir, peft_type):
    spec = demo_spec(max_steps=2, eval_fraction=0, learning_rate=1e-2)
    spec["method"] = {"peft_type": peft_type, **METHOD_FIELDS.get(peft_type, {})}
    try:
        from app.jobspec import method_config

        method_config(spec["method"], "CAUSAL_LM")
    except peft_core.ConfigError as exc:
        pytest.skip(f"{peft_type} needs settings beyond its defaults: {exc}")
    result = run_training(spec, tmp_path, Recorder().hooks())
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert result["steps"] == 2 and config["peft_type"] == peft_type


def test_importing_the_trainer_does_not_import_torch():
    """The job runner imports the hooks and errors before it knows it will train (keeps its parent light)."""
    import subprocess
    import sys

    code = "import sys, worker.training, worker.training.hooks, worker.training.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
