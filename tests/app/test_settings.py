"""app.settings: embedded defaults, parsing, and every bad variable named at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, get_settings, load_settings


def test_defaults_need_no_outside_service(tmp_path: Path):
    settings = load_settings({"STUDIO_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'studio.db'}"
    assert settings.broker_url == "filesystem://" and settings.broker_dir == tmp_path / "broker"
    assert (settings.host, settings.port, settings.lease_seconds, settings.max_attempts) == ("127.0.0.1", 7860, 90.0, 3)
    assert settings.jobs_dir == tmp_path / "jobs" and settings.uses_sqlite


def test_values_are_parsed_from_the_environment():
    settings = load_settings({
        "STUDIO_DATA_DIR": "/srv/studio",
        "STUDIO_DATABASE_URL": "postgresql+psycopg://studio@db/studio",
        "STUDIO_BROKER_URL": "redis://redis:6379/0",
        "STUDIO_PORT": "8000",
        "STUDIO_LEASE_SECONDS": "30",
        "STUDIO_MAX_UPLOAD_BYTES": "500MB",
    })
    assert settings.data_dir == Path("/srv/studio") and not settings.uses_sqlite
    assert (settings.port, settings.lease_seconds, settings.max_upload_bytes) == (8000, 30.0, 500_000_000)
    assert load_settings({"STUDIO_MAX_UPLOAD_BYTES": "2GiB"}).max_upload_bytes == 2 * 2**30


def test_every_bad_variable_is_reported_at_once():
    with pytest.raises(SettingsError) as err:
        load_settings({"STUDIO_PORT": "http", "STUDIO_LEASE_SECONDS": "0", "STUDIO_DATABASE_URL": "mysql://x", "STUDIO_MAX_UPLOAD_BYTES": "lots"})
    problems = "\n".join(err.value.problems)
    assert len(err.value.problems) == 4
    assert "STUDIO_PORT: expected a whole number, got 'http'" in problems
    assert "STUDIO_LEASE_SECONDS: must be at least 1 seconds" in problems
    assert "STUDIO_DATABASE_URL: expected sqlite:///" in problems
    assert "STUDIO_MAX_UPLOAD_BYTES: expected a size such as 500MB" in problems


def test_unknown_studio_variables_are_warned_about(caplog: pytest.LogCaptureFixture):
    load_settings({"STUDIO_LEASE_SECOND": "5"})
    assert "STUDIO_LEASE_SECOND is not a studio setting" in caplog.text


def test_get_settings_is_built_on_demand_and_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings() and get_settings().data_dir == tmp_path
    finally:
        get_settings.cache_clear()


def test_dataset_roots_are_absolute_folders_with_symlinks_followed(tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    settings = load_settings({"STUDIO_DATASET_ROOTS": f"{tmp_path / 'link'}:/srv/data/, /srv/more"})
    assert settings.dataset_roots == (real, Path("/srv/data"), Path("/srv/more"))
    assert load_settings({}).dataset_roots == () and load_settings({"STUDIO_DATASET_ROOTS": " "}).dataset_roots == ()
    with pytest.raises(SettingsError, match="STUDIO_DATASET_ROOTS: expected absolute folders such as /srv/datasets, got 'data'"):
        load_settings({"STUDIO_DATASET_ROOTS": "/srv/ok,data"})
