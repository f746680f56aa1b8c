"""Test databases: a fresh SQLite file per test, one fresh PostgreSQL database per test session.

PostgreSQL is reached through PEFT_STUDIO_TEST_PG_URL (default: the loopback server `.ci/run` starts);
when it cannot be reached the PostgreSQL cases are skipped, saying why.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.db.migrate import upgrade
from app.db.models import Base
from app.db.session import get_engine
from app.settings import load_settings

PG_ADMIN_URL = os.environ.get("PEFT_STUDIO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def migrate(url: str) -> None:
    upgrade(load_settings({"STUDIO_DATABASE_URL": url, "STUDIO_DATA_DIR": "/tmp"}))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session, migrated to head, dropped at the end."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"studio_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server: skip, with the reason
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}); set PEFT_STUDIO_TEST_PG_URL")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    get_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def empty_tables(url: str) -> None:
    """Start a PostgreSQL test from empty tables (ids restart, so tests read alike on both databases)."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
