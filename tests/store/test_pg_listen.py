"""The PostgreSQL change listener (LISTEN/NOTIFY) reconnects by itself when its
connection dies; polling covers the gap, and the reconnect itself counts as a change."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from hookcast.store.postgres import CHANNEL, PostgresDatabase
from pg_support import fresh_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("hookcast_listen") as url:
        yield url


async def _changed(store: PostgresDatabase, since: int, seconds: float = 10.0) -> int:
    """Poll data_version (as an idle worker does) until it moves past *since*."""
    for _ in range(int(seconds / 0.02)):
        version = await store.data_version()
        if version > since:
            return version
        await asyncio.sleep(0.02)
    raise AssertionError(f"no change seen within {seconds} s")


async def test_the_listener_comes_back_after_its_connection_is_killed(pg_url: str) -> None:
    store = PostgresDatabase(pg_url)
    await store.open()
    try:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            v0 = await store.data_version()  # opens the listener
            admin.execute(f"NOTIFY {CHANNEL}")
            v1 = await _changed(store, v0)

            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'hookcast-listen' AND datname = current_database()"
            ).fetchall()
            assert killed == [(True,)]
            # the reconnect counts as a change (a notification may have been missed)
            v2 = await _changed(store, v1)
            pids = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'hookcast-listen' AND datname = current_database()"
            ).fetchone()
            assert pids == (1,)
            admin.execute(f"NOTIFY {CHANNEL}")  # and it hears new notifications again
            await _changed(store, v2)
    finally:
        await store.close()
