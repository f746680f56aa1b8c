"""A corpus of files people might bring that the studio must refuse, each with what the error has to say.

Generated (not committed) so the big ones (a 1 MB field, an over-limit file) cost nothing in git and every
case is readable here: (file name, how to write it, words the error must contain).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MB = 1_000_000


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train.jsonl", '{"text": "hi"}\n')


def _tar(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        data = b'{"text": "hi"}\n'
        info = tarfile.TarInfo("train.jsonl")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def _parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


def _text(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


def _lines(*rows: object) -> Callable[[Path], None]:
    return _text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


GOOD = {"prompt": "2 + 2?", "completion": "4"}

# (file name, writer, [words the error must contain], how it is brought in) -- the file name is always expected too.
CORPUS: list[tuple[str, Callable[[Path], None], list[str], dict]] = [
    ("malformed.jsonl", _lines(GOOD, '{"prompt": "3 + 3?", "completion": ', GOOD), ["1 bad line", "line 2: not valid JSON"], {}),
    ("missing_column.csv", _text("prompt,answer\n2 + 2?,4\n"), ["no column for 'completion'", "columns: prompt, answer"],
     {"shape": "prompt_completion"}),
    ("mapped_to_nothing.csv", _text("question,answer\n2 + 2?,4\n"), ["no column 'reply'", "columns: question, answer"],
     {"shape": "prompt_completion", "mapping": {"prompt": "question", "completion": "reply"}}),
    ("missing_value.jsonl", _lines(GOOD, {"prompt": "5 + 5?"}), ["line 2: missing 'completion'"], {}),
    ("empty.csv", _text(""), ["is empty (0 bytes)"], {}),
    ("blank_lines.jsonl", _text("\n\n  \n"), ["has no rows"], {}),
    ("header_only.csv", _text("prompt,completion\n"), ["has no rows"], {}),
    ("latin1.csv", _text("prompt,completion\nun café?,oui\n", "latin-1"), ["not UTF-8", "line 2", "0xe9"], {}),
    ("latin1.jsonl", _text('{"prompt": "caf\xe9", "completion": "x"}\n', "latin-1"), ["line 1: not UTF-8"], {}),
    ("wrong_types.jsonl", _lines(GOOD, {"prompt": "x", "completion": 7}), ["line 2: 'completion' must be text, got int"], {}),
    ("wrong_types.parquet", _parquet(pa.table({"prompt": ["a", "b"], "completion": [b"\x00\x01", b"\x02"]})),
     ["row 1: column 'completion' holds binary data", "2 bad row"], {}),
    ("ragged_unknown_columns.csv", _text("ask,reply\nhello,hi\nhow are you?,fine,thanks\n"), ["line 3: has 3 fields; the header has 2"], {}),
    ("ragged.csv", _text("prompt,completion\na,b\nc,d,e\n"), ["line 3: has 3 fields; the header has 2"], {}),
    ("not_a_list.json", _text('{"prompt": "a", "completion": "b"}'), ["holds a JSON dict, not a list of rows"], {}),
    ("broken.json", _text('[{"prompt": "a",\n "completion": }]'), ["not valid JSON", "line 2"], {}),
    ("archive.zip", _zip, ["is a zip archive"], {}),
    ("disguised_zip.jsonl", _zip, ["is a zip archive"], {}),  # sniffed by content, not by extension
    ("data.jsonl.gz", lambda p: p.write_bytes(gzip.compress(b'{"text": "hi"}\n')), ["is a gzip archive"], {}),
    ("data.tar", _tar, ["is a tar archive"], {}),
    ("fake.parquet", _text("prompt,completion\na,b\n"), ["not a Parquet file"], {}),
    ("notes.txt", _text("hello\n"), ["extension the studio does not read (.txt)"], {}),
    ("huge_field.csv", _text("prompt,completion\nq," + "x" * (MB + 10) + "\n"), ["line 2: column 'completion' is 1.0 MB", "at most 1 MB"], {}),
    ("huge_line.jsonl", _lines(GOOD, {"prompt": "q", "completion": "x" * (MB + 10)}), ["line 2:", "at most 1 MB"], {}),
    ("no_assistant.jsonl", _lines({"messages": [{"role": "user", "content": "hi"}]}), ["line 1: no assistant message"], {}),
    ("over_limit.jsonl", _lines(*[GOOD] * 200_000), ["MiB; the limit is"], {}),
]
