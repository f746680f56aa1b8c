"""JSONL uploads: checked line by line, every bad line named, kept under the data directory by content hash."""

from __future__ import annotations

import pytest

from app.services.uploads import UploadError, dataset_rows, store_jsonl
from app.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings({"STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_MAX_UPLOAD_BYTES": "1MB"})


def test_a_good_file_is_stored_once_by_hash(tmp_path, settings):
    src = tmp_path / "mine.jsonl"
    src.write_text('{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": "d"}\n')
    first = store_jsonl(src, original_name="my data.jsonl", settings=settings)
    again = store_jsonl(src, original_name="my data.jsonl", settings=settings)
    assert first.path == again.path and first.path.parent == settings.data_dir / "uploads"
    assert first.rows == 2 and first.columns == ("completion", "prompt")
    assert dataset_rows({"source": "jsonl", "path": str(first.path)}, settings) == 2


def test_every_bad_line_is_reported_by_number(tmp_path, settings):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\nnot json\n[1, 2]\n{"text": NaN}\n')
    with pytest.raises(UploadError) as err:
        store_jsonl(src, original_name="bad.jsonl", settings=settings)
    assert [p.split(":")[0] for p in err.value.problems] == ["line 2", "line 3", "line 4"]


def test_size_and_extension_limits(tmp_path, settings):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b'{"text": "x"}\n' * 100_000)
    with pytest.raises(UploadError, match="the limit is"):
        store_jsonl(big, original_name="big.jsonl", settings=settings)
    with pytest.raises(UploadError, match="expected a .jsonl file"):
        store_jsonl(big, original_name="data.csv", settings=settings)


def test_rows_are_only_counted_inside_the_data_directory(tmp_path, settings):
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('{"text": "x"}\n')
    assert dataset_rows({"source": "jsonl", "path": str(outside)}, settings) is None
    assert dataset_rows({"source": "demo"}, settings) > 100
