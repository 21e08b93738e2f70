"""Create or upgrade the schema (Alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

from hookcast.store.urls import is_postgres, sqlite_path

_HERE = Path(__file__).parent / "migrations"


def sync_url(url: str) -> str:
    """The SQLAlchemy URL for a hookcast database URL (sync drivers)."""
    if is_postgres(url):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return "sqlite:///" + sqlite_path(url)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def engine_for(url: str) -> Engine:
    return create_engine(sync_url(url))


def upgrade(url: str, revision: str = "head") -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
