"""worker.training.checkpoint: what a checkpoint holds, and that resuming continues the same loss curve."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from worker.training import TrainingCancelled, TrainingError, checkpoint, loop, run_training

from .conftest import Recorder, demo_spec

# Dropout and accumulation make the curve depend on the RNG and on the data position, so a resume that
# restored either wrongly would show up as different losses.
RESUMABLE = dict(max_steps=6, checkpoint_every=3, eval_every=3, gradient_accumulation_steps=2, batch_size=2, learning_rate=5e-3)


def resumable_spec() -> dict:
    spec = demo_spec(**RESUMABLE)
    spec["method"] = {"peft_type": "LORA", "lora_dropout": 0.2}
    return spec


def test_resuming_after_an_interruption_continues_the_same_loss_curve(tmp_path, data_dir):
    straight = Recorder()
    run_training(resumable_spec(), tmp_path / "straight", straight.hooks())

    interrupted = Recorder(stop_before=5)
    with pytest.raises(TrainingCancelled):
        run_training(resumable_spec(), tmp_path / "resumed", interrupted.hooks())
    assert [step for _, step in interrupted.checkpoints] == [3]

    resumed = Recorder()
    folder = tmp_path / "resumed" / "checkpoints" / "step-3"
    result = run_training(resumable_spec(), tmp_path / "resumed", resumed.hooks(), resume_from=folder)

    assert sorted(resumed.losses()) == [4, 5, 6]
    expected = straight.losses()
    for step, loss in {**interrupted.losses(), **resumed.losses()}.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    assert result["final_eval_loss"] == pytest.approx(straight.metrics[-1]["eval_loss"], rel=1e-6)
    assert resumed.progress[0] == (4, 6)
    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)


def test_a_checkpoint_holds_everything_resuming_needs(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(loop, "KEEP_CHECKPOINTS", 2)
    rec = Recorder()
    run_training(demo_spec(max_steps=5, checkpoint_every=1), tmp_path, rec.hooks())
    assert [step for _, step in rec.checkpoints] == [1, 2, 3, 4]  # not after the last step: the adapter is the result
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-3", "step-4"]  # older ones pruned, no temporary folders left
    folder = tmp_path / "checkpoints" / "step-4"
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json"):
        assert (folder / name).is_file(), name
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["micro_batches"] == 4 and state["data_seed"] == 42
    assert state["schedule"] == {"kind": "cosine", "peak": 2e-4, "warmup_steps": 1, "total_steps": 5}
    assert state["spec"]["base_model"] == "demo" and state["rng"]["python"]
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    assert saved["optimizer"]["state"] and saved["scaler"] is None
    assert "torch" in torch.load(folder / "rng.pt", weights_only=True)


def test_resuming_refuses_other_settings_and_broken_folders(tmp_path, data_dir):
    run_training(demo_spec(max_steps=3, checkpoint_every=2), tmp_path, Recorder().hooks())
    folder = tmp_path / "checkpoints" / "step-2"
    with pytest.raises(TrainingError, match=r"different settings \(training.learning_rate\)"):
        run_training(demo_spec(max_steps=3, checkpoint_every=2, learning_rate=1e-3), tmp_path, Recorder().hooks(), resume_from=folder)
    # logging and checkpoint intervals do not change the curve, so they may differ
    run_training(demo_spec(max_steps=3, checkpoint_every=5, log_every=2), tmp_path / "other", Recorder().hooks(), resume_from=folder)
    (folder / "optimizer.pt").unlink()
    with pytest.raises(TrainingError, match="missing optimizer.pt"):
        run_training(demo_spec(max_steps=3, checkpoint_every=2), tmp_path, Recorder().hooks(), resume_from=folder)


def test_rng_state_round_trips():
    random.seed(1)
    torch.manual_seed(1)
    plain, tensors = checkpoint.capture_rng()
    json.dumps(plain)  # must be JSON
    expected = (random.random(), torch.rand(3))
    random.seed(2)
    torch.manual_seed(2)
    checkpoint.restore_rng(json.loads(json.dumps(plain)), tensors)
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])


def test_partial_checkpoints_are_ignored_and_cleaned(tmp_path):
    (tmp_path / ".tmp-step-5-123").mkdir()
    (tmp_path / "step-4").mkdir()  # no trainer_state.json: incomplete
    assert checkpoint.list_checkpoints(tmp_path) == []
    checkpoint.remove_partial(tmp_path)
    assert not (tmp_path / ".tmp-step-5-123").exists()
