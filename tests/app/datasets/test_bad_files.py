"""The bad-file corpus: every file is refused with its name, the line/row and the problem, and nothing is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.datasets import DatasetError
from app.db.models import Dataset
from app.services import datasets as service
from tests.app.datasets.bad_files import CORPUS


@pytest.fixture
def small_limit(studio, monkeypatch):
    """A 3 MB upload limit so the over-limit case stays small (the 1 MB fields still fit)."""
    from dataclasses import replace

    return replace(studio, max_upload_bytes=3 * 2**20)


@pytest.mark.parametrize(("name", "write", "expected", "how"), CORPUS, ids=[c[0] for c in CORPUS])
def test_a_bad_file_is_refused_in_words_and_nothing_is_kept(tmp_path: Path, session, small_limit, name, write, expected, how):
    path = tmp_path / "in" / name
    path.parent.mkdir()
    write(path)
    with pytest.raises(DatasetError) as info:
        service.import_file(session, path, name=name, settings=small_limit, **how)
    message = info.value.message
    assert name in message, message
    for words in expected:
        assert words in message, f"{words!r} not in {message!r}"
    assert info.value.hint, "every refusal says what to do"
    assert session.scalar(select(func.count()).select_from(Dataset)) == 0
    stored = small_limit.data_dir / "datasets"
    assert not stored.exists() or not any(stored.rglob("*")), list(stored.rglob("*"))
