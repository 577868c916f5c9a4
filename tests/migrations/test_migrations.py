"""Schema changes only through Alembic: migrations build the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from api.db import Base
from api.migrate import alembic_config, current_heads, upgrade
from api.settings import Settings


def test_upgrade_from_empty_matches_the_models_and_downgrades(settings: Settings) -> None:
    upgrade(settings)
    at, heads = current_heads(settings)
    assert at == heads
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    command.downgrade(alembic_config(settings), "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
