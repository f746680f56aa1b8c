"""Every supported shape from every file type, detected or mapped, normalised to what the trainer reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets import DatasetError, detect, read_rows

CHAT = [{"role": "user", "content": "Greet Anna."}, {"role": "assistant", "content": "Hello, Anna!"}]


def write(path: Path, records: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        with path.open("w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=list(records[0]))
            out.writeheader()
            out.writerows({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in records)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
@pytest.mark.parametrize(
    ("records", "detected", "fmt", "first"),
    [
        ([{"messages": CHAT}], "chat", "chat", {"messages": CHAT}),
        ([{"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}],
         "sharegpt", "chat",
         {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
        ([{"instruction": "Add.", "input": "2 + 2", "output": "4"}], "instruction", "chat",
         {"messages": [{"role": "user", "content": "Add.\n\n2 + 2"}, {"role": "assistant", "content": "4"}]}),
        ([{"instruction": "Say hi.", "input": " ", "output": "hi", "system": "Terse."}], "instruction", "chat",
         {"messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]}),
        ([{"prompt": "2 + 2?", "completion": "4"}], "prompt_completion", "prompt_completion", {"prompt": "2 + 2?", "completion": "4"}),
        ([{"text": "The sky is blue."}], "text", "text", {"text": "The sky is blue."}),
        ([{"text": "great film", "label": "positive"}], "classification", "prompt_completion",
         {"prompt": "great film\nLabel: ", "completion": "positive"}),
    ],
    ids=["chat", "sharegpt", "instruction", "instruction-system", "prompt_completion", "text", "classification"],
)
def test_each_shape_from_each_file_type(tmp_path, suffix, records, detected, fmt, first):
    rows = read_rows("file", str(write(tmp_path / f"d{suffix}", records)))
    assert (rows.detected, rows.format, rows.rows[0], rows.lines) == (detected, fmt, first, [2 if suffix == ".csv" else 1])


def test_a_mapping_reads_non_standard_columns_and_notes_the_rest(tmp_path):
    path = write(tmp_path / "qa.csv", [{"question": "2 + 2?", "answer": "4", "source": "book"}, {"question": "3 + 3?", "answer": "6", "source": "web"}])
    with pytest.raises(DatasetError, match="cannot tell the format"):
        read_rows("file", str(path))
    rows = read_rows("file", str(path), "prompt_completion", {"prompt": "question", "completion": "answer"})
    assert rows.rows == [{"prompt": "2 + 2?", "completion": "4"}, {"prompt": "3 + 3?", "completion": "6"}]
    assert rows.notes == ["columns not used: source"]
    with pytest.raises(DatasetError, match="no column 'reply'"):
        read_rows("file", str(path), "prompt_completion", {"prompt": "question", "completion": "reply"})
    with pytest.raises(DatasetError, match="names 'answer', which prompt/completion data does not have"):
        read_rows("file", str(path), "prompt_completion", {"answer": "answer"})


def test_detection_is_sure_on_exact_names_and_a_guess_on_synonyms():
    assert detect(["id", "messages"]).sure and detect(["id", "messages"]).shape == "chat"
    assert detect(["Instruction", "Output"]).mapping == {"instruction": "Instruction", "output": "Output"}
    guess = detect(["question", "answer"])
    assert (guess.shape, guess.mapping, guess.sure) == ("prompt_completion", {"prompt": "question", "completion": "answer"}, False)
    assert detect(["sentence", "label"]).shape == "classification" and not detect(["sentence", "label"]).sure
    assert detect(["alpha", "beta"]).shape is None


def test_integer_labels_and_json_messages_in_a_csv_cell(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["bad", "good"], "label": [0, 1]}), path)
    assert read_rows("file", str(path)).rows[1] == {"prompt": "good\nLabel: ", "completion": "1"}
    csv_path = tmp_path / "m.csv"
    csv_path.write_text('messages\n"' + json.dumps(CHAT).replace('"', '""') + '"\n')
    assert read_rows("file", str(csv_path)).rows == [{"messages": CHAT}]


def test_rows_of_the_wrong_type_are_named_by_row_and_column(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"prompt": ["a", None, "c"], "completion": ["x", "y", "z"]}), path)
    with pytest.raises(DatasetError) as info:
        read_rows("file", str(path))
    assert "row 2: missing 'prompt'" in info.value.message and str(path) in info.value.message
    path2 = tmp_path / "n.jsonl"
    path2.write_text('{"instruction": ["a"], "output": "b"}\n')
    with pytest.raises(DatasetError, match="line 1: 'instruction' must be text, got list"):
        read_rows("file", str(path2))
