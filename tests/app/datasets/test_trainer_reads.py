"""The trainer reads a stored dataset through app.datasets with its mapping, and refuses a bad one before any model loads."""

from __future__ import annotations

import pytest

from tests.worker.training.conftest import Recorder, demo_spec
from worker.training import TrainingError, run_training


class ModelLoaded(Exception):
    pass


@pytest.fixture
def no_model(monkeypatch):
    def load(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr("worker.training.model.load_base_model", load)


def _spec(path, mapping):
    spec = demo_spec(max_steps=1)
    spec["dataset"] = {"source": "stored", "dataset_id": 1, "path": str(path), "format": "prompt_completion", "mapping": mapping}
    return spec


def test_the_worker_reads_the_mapped_columns(tmp_path, no_model):
    path = tmp_path / "support.csv"
    path.write_text("ask,reply,topic\nhi?,hello,greeting\nbye?,see you,greeting\n")
    rec = Recorder()
    with pytest.raises(ModelLoaded):  # the dataset was read and checked; loading the model comes next
        run_training(_spec(path, {"prompt": "ask", "completion": "reply"}), tmp_path / "work", rec.hooks())
    assert "dataset: support.csv, 2 rows of prompt/completion data (columns not used: topic)" in rec.logs


def test_a_bad_row_fails_before_the_model_loads_naming_file_and_line(tmp_path, no_model):
    path = tmp_path / "support.csv"
    path.write_text("ask,reply\nhi?,hello\nbye?,\n")
    with pytest.raises(TrainingError) as info:
        run_training(_spec(path, {"prompt": "ask", "completion": "reply"}), tmp_path / "work", Recorder().hooks())
    assert "support.csv has 1 bad line(s)" in info.value.message and "line 3: 'reply' is empty" in info.value.message
    assert info.value.hint
    with pytest.raises(TrainingError, match="no column 'answer'"):
        run_training(_spec(path, {"prompt": "ask", "completion": "answer"}), tmp_path / "work", Recorder().hooks())
