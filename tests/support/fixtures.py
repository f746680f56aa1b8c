"""Fixtures shared by tests/app and tests/worker (imported by their conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.db.session import session_scope
from app.settings import Settings, get_settings
from tests.support.databases import empty_tables, migrate, postgres_url  # noqa: F401  (fixture)

FAST_TIMINGS = {
    "STUDIO_LEASE_SECONDS": "2",
    "STUDIO_REAP_INTERVAL_SECONDS": "0.3",
    "STUDIO_REDELIVER_AFTER_SECONDS": "3",
    "STUDIO_CANCEL_GRACE_SECONDS": "2",
    "STUDIO_MAX_ATTEMPTS": "3",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every DB test runs on both: a fresh SQLite file, and the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'studio.db'}"
        migrate(url)
        return url
    url = request.getfixturevalue("postgres_url")
    empty_tables(url)
    return url


@pytest.fixture
def studio(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for one test: its own data folder and embedded broker, the parametrized database."""
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STUDIO_DATABASE_URL", database_url)
    monkeypatch.setenv("STUDIO_BROKER_URL", "filesystem://")
    for key, value in FAST_TIMINGS.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def session(studio: Settings) -> Iterator[Session]:
    with session_scope(studio) as s:
        yield s
