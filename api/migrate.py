"""Alembic, driven from code: the embedded default upgrades on start, `shadowdesk db upgrade` in production."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from api.settings import Settings


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # `%` would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def current_heads(settings: Settings) -> tuple[set[str], set[str]]:
    """(revisions the database is at, head revisions of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    script = ScriptDirectory.from_config(alembic_config(settings))
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            db_heads = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    return db_heads, set(script.get_heads())
