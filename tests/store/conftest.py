"""The store contract suite runs against every store; PostgreSQL joins when it exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookcast.domain.ports import Store
from hookcast.store import migrate
from hookcast.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path / 'contract.db'}"
    migrate.upgrade(url)
    s = SQLiteStore(url)
    await s.open()
    yield s
    await s.close()
