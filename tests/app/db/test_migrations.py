"""The models and the migrations agree (autogenerate finds nothing to do), on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app.db.migrate import alembic_config
from app.db.models import Base
from app.db.session import get_engine


def test_models_match_migrations(database_url: str):
    with get_engine(database_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def test_constraints_follow_the_naming_convention(database_url: str):
    inspector = inspect(get_engine(database_url))
    assert {fk["name"] for fk in inspector.get_foreign_keys("metrics")} == {"fk_metrics_job_id_jobs"}
    assert "ix_metrics_job_id_step" in {ix["name"] for ix in inspector.get_indexes("metrics")}


def test_sqlite_downgrade_and_upgrade_round_trip(tmp_path):
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(inspect(get_engine(url)).get_table_names()) == {"alembic_version"}
    command.upgrade(config, "head")
    assert {"jobs", "metrics", "datasets", "artifacts"} <= set(inspect(get_engine(url)).get_table_names())
