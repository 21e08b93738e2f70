"""The store contract suite runs against every store: the embedded SQLite one and
PostgreSQL (one database for the session, emptied before each test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hookcast.store import Store, migrate, open_store
from pg_support import Database, fresh_database


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Database]:
    with fresh_database("hookcast_contract") as url:
        db = Database(url)
        try:
            yield db
        finally:
            db.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
        migrate.upgrade(url)
        s = open_store(url)
    else:
        db: Database = request.getfixturevalue("pg_database")
        db.truncate()
        s = open_store(db.url)
    await s.open()
    yield s
    await s.close()
