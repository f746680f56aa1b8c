"""Run the Alembic migrations programmatically: `peft-studio db upgrade`, and the app and workers at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations folder and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent; safe to run from several processes at once)."""
    settings = settings or get_settings()
    command.upgrade(alembic_config(settings.database_url), revision)
