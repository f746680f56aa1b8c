"""Row counts for the step estimate: the demo, a stored dataset's record, JSONL files only under the data directory."""

from __future__ import annotations

from app.services import datasets as service
from app.services.uploads import dataset_rows


def test_rows_for_the_estimate(tmp_path, session, studio):
    src = tmp_path / "qa.csv"
    src.write_text("prompt,completion\n" + "".join(f"q{i},a{i}\n" for i in range(7)))
    record = service.import_file(session, src, name="qa.csv", settings=studio)
    assert dataset_rows({"source": "stored", "dataset_id": record.id}, studio) == 7
    assert dataset_rows({"source": "stored", "dataset_id": record.id + 1}, studio) is None
    assert dataset_rows({"source": "demo"}, studio) > 100
    inside = studio.data_dir / "x.jsonl"
    inside.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert dataset_rows({"source": "jsonl", "path": str(inside)}, studio) == 2
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"text": "a"}\n')
    assert dataset_rows({"source": "jsonl", "path": str(outside)}, studio) is None
