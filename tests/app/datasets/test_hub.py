"""Hub datasets without network: a clear offline message; a dataset with a loading script is refused; a local folder works."""

from __future__ import annotations

import json

import pytest

from app.datasets import DatasetError
from app.datasets.hub import export_jsonl


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_hub_id_offline_names_the_repo_and_suggests_a_local_path(tmp_path):
    with pytest.raises(DatasetError) as info:
        export_jsonl("someone/not-cached", None, "train", tmp_path / "out.jsonl", cache_dir=tmp_path / "cache")
    assert "'someone/not-cached'" in info.value.message and "offline" in info.value.message
    assert "local file or folder path" in info.value.hint
    assert not (tmp_path / "out.jsonl").exists()


def test_a_dataset_with_a_loading_script_is_refused(tmp_path):
    folder = tmp_path / "scripted"
    folder.mkdir()
    (folder / "scripted.py").write_text("raise SystemExit('this must never run')\n")
    (folder / "data.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(DatasetError, match=r"loading script \(scripted.py\).*trust_remote_code, which the studio refuses"):
        export_jsonl(str(folder), None, "train", tmp_path / "out.jsonl")


def test_a_local_dataset_folder_is_exported_as_jsonl(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.csv").write_text("prompt,completion\n2 + 2?,four\n3 + 3?,six\n")
    out = tmp_path / "out.jsonl"
    assert export_jsonl(str(folder), None, "train", out, cache_dir=tmp_path / "cache") == 2
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"prompt": "2 + 2?", "completion": "four"},
                                                                            {"prompt": "3 + 3?", "completion": "six"}]
    with pytest.raises(DatasetError, match="no split 'test'"):
        export_jsonl(str(folder), None, "test", tmp_path / "other.jsonl", cache_dir=tmp_path / "cache")
