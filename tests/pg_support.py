"""PostgreSQL for the tests: fresh databases on the local server.

The PostgreSQL tests are never skipped: when the server is unreachable they fail, saying
so. The server is ``postgresql://postgres@127.0.0.1:5432`` (trust auth) unless
``HOOKCAST_TEST_POSTGRES`` names another (without a database name).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from hookcast.store import migrate
from hookcast.store.schema import metadata

SERVER = os.environ.get("HOOKCAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
TABLES = [t.name for t in metadata.sorted_tables]


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        error = str(exc).strip()
    pytest.fail(
        f"PostgreSQL is not reachable at {SERVER}: {error}\nThe PostgreSQL tests need a "
        "server on 127.0.0.1:5432 with trust auth for user postgres; start it (or set "
        "HOOKCAST_TEST_POSTGRES) and run again.",
        pytrace=False,
    )


@contextmanager
def fresh_database(prefix: str = "hookcast_test", *, migrated: bool = True) -> Iterator[str]:
    """A new, empty database (at schema head when *migrated*), dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{SERVER}/{name}"
    try:
        if migrated:
            migrate.upgrade(url)
        yield url
    finally:
        with _admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def downgrade(url: str, revision: str) -> None:
    """Alembic's downgrade to *revision*, on hookcast's migration scripts."""
    from alembic import command

    engine = migrate.engine_for(url)
    try:
        with engine.begin() as conn:
            cfg = migrate._config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


class Database:
    """One migrated database for a whole session, emptied between tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = psycopg.connect(url, autocommit=True)

    def truncate(self) -> None:
        self._conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, TABLES)))
        )

    def close(self) -> None:
        self._conn.close()
