"""Create or upgrade the schema (Alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text

from hookcast.domain.errors import HookcastError
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


#: the PostgreSQL advisory lock that serialises concurrent migrations (many processes
#: starting at once on one database); its key is arbitrary but fixed
_MIGRATION_LOCK = 0x686F6F6B63617374  # "hookcast"


class SchemaTooNewError(HookcastError):
    """The database was migrated by a newer hookcast than this one."""


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade to *revision*. Processes starting together on one PostgreSQL database take
    turns (an advisory lock held for the migration's transaction); a database already at
    a revision this version does not know (a newer hookcast migrated it) is left alone
    and :class:`SchemaTooNewError` says so."""
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            if is_postgres(url):
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and not _known(current):
                raise SchemaTooNewError(
                    f"the database schema is at revision {current}, which this hookcast "
                    f"does not know (its newest is {head_revision()}): a newer hookcast "
                    "migrated it; run that version, or restore a backup for this one"
                )
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:
        return False


def schema_state(url: str) -> tuple[str | None, str]:
    """The database's revision and how it compares to this version's head: ``current``,
    ``behind`` (run ``hookcast migrate``), ``ahead`` (a newer hookcast migrated it; fine
    for a process still on the old version during a rolling upgrade) or ``empty``."""
    current = current_revision(url)
    if current is None:
        return None, "empty"
    if current == head_revision():
        return current, "current"
    return current, "behind" if _known(current) else "ahead"


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
