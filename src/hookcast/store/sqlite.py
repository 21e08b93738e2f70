"""The embedded database: one SQLite file in WAL mode, driven by the stdlib module.

Writes go through one connection (SQLite has one writer at a time), reads through another
(WAL lets them run beside the writer). Each transaction runs as a whole, synchronously,
where its connection lives: on a thread of its own, so the event loop goes on while the
commit syncs, or inline on the loop's thread (``inline``), which skips the hop and the
GIL hand-offs at the price of blocking the loop for one short, batched transaction (the
choice of a worker process, whose loop has nothing better to do meanwhile).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Table

from hookcast.domain.errors import StoreError
from hookcast.store.db import Row, Work, drive
from hookcast.store.sql import Dialect, compile_sql
from hookcast.store.urls import sqlite_path

T = TypeVar("T")
_SQLITE = Dialect.SQLITE


def connect(path: str, *, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-16384")  # 16 MiB a connection: a few per process
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


class SqliteTx:
    """One transaction on one connection; never suspends (see :func:`store.db.drive`)."""

    dialect = _SQLITE
    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _execute(self, sql: str, args: dict[str, Any]) -> sqlite3.Cursor:
        compiled = compile_sql(sql, _SQLITE)
        return self.conn.execute(compiled.text, compiled.args(args))

    async def rows(self, sql: str, **args: Any) -> list[Row]:
        return self._execute(sql, args).fetchall()

    async def row(self, sql: str, **args: Any) -> Row | None:
        found: Row | None = self._execute(sql, args).fetchone()
        return found

    async def value(self, sql: str, **args: Any) -> Any:
        found = self._execute(sql, args).fetchone()
        return None if found is None else found[0]

    async def run(self, sql: str, **args: Any) -> int:
        return self._execute(sql, args).rowcount

    async def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """*sql* (positional ``?`` parameters) once per row."""
        return self.conn.executemany(sql, rows).rowcount

    async def insert(
        self, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        if rows:
            self.conn.executemany(_insert_sql(table.name, tuple(columns)), rows)

    async def lock(self, names: Iterable[str]) -> None:
        return None  # writers take turns: BEGIN IMMEDIATE

    def notify(self) -> None:
        return None  # other processes watch PRAGMA data_version


_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    sql = _INSERTS.get((table, columns))
    if sql is None:
        marks = ", ".join("?" * len(columns))
        sql = _INSERTS[(table, columns)] = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        )
    return sql


class _Connection:
    """One connection and the thread it is used on (or the loop's, when inline)."""

    def __init__(self, path: str, name: str, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: sqlite3.Connection | None = None
        self.inline = False

    async def open(self) -> None:
        def opened() -> sqlite3.Connection:
            return connect(self._path, synchronous=self._synchronous)

        self.conn = await asyncio.get_running_loop().run_in_executor(self._pool, opened)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.inline:
            return self._call(fn)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        if conn is None:
            raise StoreError("the store is closed")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"database error: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        def close() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)


class SqliteDatabase:
    """The SQLite :class:`hookcast.store.db.Database`. ``open()`` before use."""

    dialect = _SQLITE

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.path = sqlite_path(url)
        self._writer = _Connection(self.path, "hookcast-db-write", synchronous)
        self._reader = _Connection(self.path, "hookcast-db-read", synchronous)
        #: writes (and reads) on the loop's own thread; set before ``open()``
        self.inline_writes = False
        self.inline_reads = False
        self._version: sqlite3.Connection | None = None
        self._version_lock = threading.Lock()
        self._workers_lock: int | None = None

    async def open(self) -> None:
        parent = Path(self.path).parent
        if not parent.exists():
            raise StoreError(f"the directory {parent} for the database does not exist")
        await self._writer.open()
        await self._reader.open()
        self._writer.inline = self.inline_writes
        self._reader.inline = self.inline_reads

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
        if self._version is not None:
            self._version.close()
            self._version = None
        if self._workers_lock is not None:
            os.close(self._workers_lock)  # releases the lock
            self._workers_lock = None

    async def write(self, work: Work[T]) -> T:
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            result: T = drive(work(SqliteTx(conn)))
            conn.execute("COMMIT")
            return result

        return await self._writer.run(transaction)

    async def read(self, work: Work[T]) -> T:
        def snapshot(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return drive(work(SqliteTx(conn)))
            finally:
                conn.execute("COMMIT")

        return await self._reader.run(snapshot)

    async def data_version(self) -> int:
        """Changes whenever another connection commits to the file: asked on a connection
        of its own, inline (a few microseconds), so an idle worker may ask often."""
        with self._version_lock:
            if self._version is None:
                self._version = sqlite3.connect(self.path, check_same_thread=False)
            row = self._version.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    async def join_workers(self, reclaim: Work[int]) -> int:
        """Join the worker processes of this file (a shared lock next to it, released by
        the OS when the process ends, however it ends). When no other worker process is
        alive, every lease in the file belongs to a process that died: *reclaim* runs (in
        a transaction) before any other worker may join. Returns what it returned."""
        if self._workers_lock is not None:
            return 0
        fd = os.open(self.path + ".workers.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._workers_lock = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_SH)
            return 0
        try:
            return await self.write(reclaim)
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)  # other workers may join from now on
