"""worker.training.model: resolving 'demo', folders and Hub ids, and the errors a person can act on."""

from __future__ import annotations

import pytest
import torch

from worker.training.errors import TrainingError
from worker.training.model import _explain, load_base_model, looks_like_path


def test_demo_resolves_to_the_built_demo_model(data_dir):
    base = load_base_model("demo", dtype=torch.float32, data_dir=data_dir)
    assert base.model.config.model_type == "llama"
    assert base.tokenizer.pad_token_id is not None and base.tokenizer.chat_template
    assert "demo" in base.source


def test_a_local_folder_loads(demo_folder):
    base = load_base_model(str(demo_folder), dtype=torch.float32, data_dir=demo_folder)
    assert str(demo_folder) in base.source


def test_missing_hub_model_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TrainingError, match="not in the worker's local cache") as info:
        load_base_model("nobody-here/no-such-model-xyz", dtype=torch.float32, data_dir=tmp_path)
    assert "nobody-here/no-such-model-xyz" in str(info.value) and "hf download" in info.value.hint


def test_folders_that_are_not_models(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no config.json"):
        load_base_model(str(tmp_path / "empty"), dtype=torch.float32, data_dir=tmp_path)
    with pytest.raises(TrainingError, match="does not exist on the worker"):
        load_base_model(str(tmp_path / "missing"), dtype=torch.float32, data_dir=tmp_path)


def test_paths_and_hub_ids_are_told_apart():
    assert looks_like_path("/models/x") and looks_like_path("./x") and looks_like_path("a/b/c")
    assert not looks_like_path("Qwen/Qwen2.5-0.5B") and not looks_like_path("gpt2")


def _raised_from(kind: str, message: str = "") -> OSError:
    """An OSError as transformers raises it, caused by a huggingface_hub error class named `kind`."""
    cause = type(kind, (Exception,), {})(message)
    error = OSError("wrapped")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("kind", "message", "expected", "hint"),
    [
        ("GatedRepoError", "", "is gated", "HF_TOKEN"),
        ("RepositoryNotFoundError", "", "no model meta/x", "spelling"),
        ("LocalEntryNotFoundError", "", "local cache", "hf download"),
        ("ValueError", "please pass the argument `trust_remote_code=True`", "custom code", "natively"),
        ("ValueError", "Unrecognized configuration class BertConfig for this kind of AutoModel", "not a text-generation", "decoder"),
    ],
)
def test_hub_failures_become_actionable_errors(kind, message, expected, hint):
    error = _explain(_raised_from(kind, message), "meta/x", "meta/x")
    assert expected in str(error) and hint in error.hint
