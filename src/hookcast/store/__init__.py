"""Persistence: one implementation of the records (``records.py``), one small delivery queue
per dialect (``queue/``), one driver per dialect (``sqlite.py``, ``postgres.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hookcast.store.urls import is_postgres

# the drivers are imported by open_store: a command that only reads a database URL (the
# CLI's API client) does not load them; asyncpg only by a process that uses PostgreSQL
if TYPE_CHECKING:
    from hookcast.store.postgres import PostgresDatabase
    from hookcast.store.queue.postgres import PostgresQueue
    from hookcast.store.queue.sqlite import SqliteQueue
    from hookcast.store.records import Records
    from hookcast.store.sqlite import SqliteDatabase


@dataclass
class Store:
    """A database's records and its delivery queue (they share the database)."""

    records: Records
    queue: SqliteQueue | PostgresQueue
    db: SqliteDatabase | PostgresDatabase

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def reclaim_at_start(self, now_us: int) -> int:
        """SQLite: the worker processes of the file are counted; when this is the only one,
        every lease left in the file is stale and is reclaimed now (PostgreSQL waits for
        leases to expire: another machine may hold them)."""
        from hookcast.store.queue.sqlite import SqliteQueue

        if isinstance(self.queue, SqliteQueue):
            return await self.queue.reclaim_at_start(now_us)
        return 0


def open_store(
    url: str,
    *,
    synchronous: str = "FULL",
    pg_pool_max: int = 10,
    inline_writes: bool = False,
    inline_reads: bool = False,
) -> Store:
    """The store for a database URL, not yet open (``await store.open()``). *inline_writes*
    and *inline_reads* (SQLite only) run transactions on the event loop's thread."""
    from hookcast.store.records import Records

    if is_postgres(url):
        from hookcast.store.postgres import PostgresDatabase
        from hookcast.store.queue.postgres import PostgresQueue

        pg = PostgresDatabase(url, max_size=pg_pool_max)
        return Store(Records(pg), PostgresQueue(pg), pg)
    from hookcast.store.queue.sqlite import SqliteQueue
    from hookcast.store.sqlite import SqliteDatabase

    db = SqliteDatabase(url, synchronous=synchronous)
    db.inline_writes = inline_writes
    db.inline_reads = inline_reads
    return Store(Records(db), SqliteQueue(db), db)
