"""`upgrade head` produces exactly the declared schema, on every store."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from hookcast.store import migrate, partitions
from hookcast.store.schema import metadata
from pg_support import downgrade, fresh_database


def _not_a_partition(name: str | None, kind: str, parents: object) -> bool:
    """Daily partitions (PostgreSQL) are made at run time, not declared."""
    return not (kind == "table" and partitions.is_partition(name))


def _diff(url: str, *, server_defaults: bool = False) -> list[object]:
    """What autogenerate would change; server defaults are compared on PostgreSQL only
    (SQLite reflects them in its own quoting, which Alembic cannot compare)."""
    engine = migrate.engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": server_defaults,
                    "include_name": _not_a_partition,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_head_matches_the_declared_schema_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    assert _diff(url) == []


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()


def test_upgrade_head_matches_the_declared_schema_on_postgres() -> None:
    with fresh_database("hookcast_migrate", migrated=False) as url:
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)
        assert migrate.current_revision(url) == migrate.head_revision()
        assert _diff(url, server_defaults=True) == []
        migrate.upgrade(url)  # idempotent
        assert migrate.current_revision(url) == migrate.head_revision()


def test_downgrade_to_base_and_back_on_postgres() -> None:
    with fresh_database("hookcast_migrate") as url:
        downgrade(url, "base")
        engine = migrate.engine_for(url)
        try:
            with engine.connect() as conn:
                assert set(inspect(conn).get_table_names()) == {"alembic_version"}
        finally:
            engine.dispose()
        migrate.upgrade(url)
        assert _diff(url, server_defaults=True) == []


def test_processes_starting_together_take_turns_migrating_postgres() -> None:
    """Several processes (here threads) migrating one empty database at once: without the
    advisory lock, two of them race to create the same types and fail."""
    from concurrent.futures import ThreadPoolExecutor

    with fresh_database("hookcast_race", migrated=False) as url:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: migrate.upgrade(url), range(4)))
        assert results == [None] * 4
        assert migrate.current_revision(url) == migrate.head_revision()
        assert _diff(url, server_defaults=True) == []


def test_a_schema_from_a_newer_hookcast_is_left_alone_and_reported(tmp_path: Path) -> None:
    import pytest
    from sqlalchemy import text

    from hookcast import bootstrap
    from support import make_settings

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    migrate.upgrade(url)
    engine = migrate.engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    finally:
        engine.dispose()
    with pytest.raises(migrate.SchemaTooNewError, match="a newer hookcast migrated it"):
        migrate.upgrade(url)
    assert migrate.schema_state(url) == ("f00dfeed9999", "ahead")
    # a process of this (older) version keeps running during a rolling upgrade ...
    settings = make_settings(str(tmp_path / "newer.db"))
    assert bootstrap.run_migrations(settings) == "f00dfeed9999"
    # ... but `hookcast migrate` refuses, saying what to do
    with pytest.raises(migrate.SchemaTooNewError):
        bootstrap.run_migrations(settings, newer_ok=False)


def test_schema_state_tells_behind_from_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    assert migrate.schema_state(url) == (None, "empty")
    migrate.upgrade(url)
    assert migrate.schema_state(url) == (migrate.head_revision(), "current")
