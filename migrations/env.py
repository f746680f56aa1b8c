"""Alembic environment: the URL comes from the studio settings unless the caller set one (tests, CLI).

SQLite gets batch mode (it cannot ALTER most things in place); types are compared so a changed column
type shows up in autogenerate. On PostgreSQL an advisory lock serialises concurrent upgrades (the app
and the workers all upgrade at start).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import text
from sqlalchemy.types import TypeDecorator

from app.db.models import Base
from app.db.session import get_engine
from app.settings import get_settings

ADVISORY_LOCK_KEY = 7_860_001  # any constant shared by all studio processes


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our TypeDecorators as their plain SQL type, so revisions do not import app code."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations() -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = get_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
                render_item=render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `peft-studio db upgrade` against a database")
run_migrations()
