"""The server database: PostgreSQL through asyncpg, a pool of connections per process.

Transactions are retried when PostgreSQL picks them as a deadlock victim (rolled back
whole, so running them again is safe). Committed work is announced on a channel
(``NOTIFY``, once per transaction that asks for it); a listening connection, re-opened if
it drops, turns the notifications into a counter that idle workers watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import asyncpg
from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, Table

from hookcast.domain.errors import StoreError
from hookcast.store.db import Row, Work
from hookcast.store.sql import Dialect, compile_sql

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]

T = TypeVar("T")
log = logging.getLogger("hookcast.store")
_PG = Dialect.POSTGRES

#: the channel on which committed work is announced to workers in other processes
CHANNEL = "hookcast_work"
_DEADLOCK_RETRIES = 5
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg understands for a hookcast PostgreSQL URL."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql+asyncpg", "postgres"):
        scheme = "postgresql"
    return f"{scheme}://{rest}"


def count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name (a collision only serialises a little more)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def array_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, BigInteger):
        return "bigint[]"
    if isinstance(kind, Integer):
        return "int[]"
    if isinstance(kind, Boolean):
        return "boolean[]"
    if isinstance(kind, LargeBinary):
        return "bytea[]"
    return "text[]"


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to columns, for ``unnest``."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i, value in enumerate(row):
            cols[i].append(value)
    return cols


_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}


def insert_sql(table: Table, columns: tuple[str, ...]) -> str:
    sql = _INSERTS.get((table.name, columns))
    if sql is None:
        arrays = ", ".join(f"${i + 1}::{array_type(table, c)}" for i, c in enumerate(columns))
        sql = _INSERTS[(table.name, columns)] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING"
        )
    return sql


class PostgresTx:
    dialect = _PG
    __slots__ = ("conn", "notified")

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.notified = False

    async def rows(self, sql: str, **args: Any) -> list[Row]:
        compiled = compile_sql(sql, _PG)
        return cast("list[Row]", await self.conn.fetch(compiled.text, *compiled.args(args)))

    async def row(self, sql: str, **args: Any) -> Row | None:
        compiled = compile_sql(sql, _PG)
        found = await self.conn.fetchrow(compiled.text, *compiled.args(args))
        return cast("Row | None", found)

    async def value(self, sql: str, **args: Any) -> Any:
        compiled = compile_sql(sql, _PG)
        return await self.conn.fetchval(compiled.text, *compiled.args(args))

    async def run(self, sql: str, **args: Any) -> int:
        compiled = compile_sql(sql, _PG)
        return count(await self.conn.execute(compiled.text, *compiled.args(args)))

    async def insert(
        self, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        if rows:
            names = tuple(columns)
            await self.conn.execute(insert_sql(table, names), *columns_of(rows, len(names)))

    async def lock(self, names: Iterable[str]) -> None:
        keys = sorted({lock_key(n) for n in names})  # one order everywhere: no deadlock
        if keys:
            await self.conn.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", keys
            )

    def notify(self) -> None:
        self.notified = True


class PostgresDatabase:
    """The PostgreSQL :class:`hookcast.store.db.Database`. ``open()`` before use."""

    dialect = _PG

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = asyncpg_dsn(url)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        # data_version: bumped by every NOTIFY on CHANNEL, and on each (re)connection
        self._version = 0
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings={"application_name": "hookcast", "jit": "off"},
            )
        except _ERRORS as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        self._closing = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=5)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, Exception):
                pool.terminate()

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreError("the store is closed")
        return self._pool

    async def read(self, work: Work[T]) -> T:
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                return await work(PostgresTx(conn))
        except _ERRORS as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def write(self, work: Work[T]) -> T:
        pool = self._require_pool()
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    tx = PostgresTx(conn)
                    result = await work(tx)
                    if tx.notified:
                        await conn.execute(f"NOTIFY {CHANNEL}")  # delivered at commit
                    return result
            except (
                asyncpg.exceptions.DeadlockDetectedError,
                asyncpg.exceptions.SerializationError,
            ) as exc:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise StoreError(f"database error: {exc}") from exc
                await asyncio.sleep(0.005 * (attempt + 1))
            except _ERRORS as exc:
                raise StoreError(f"database error: {exc}") from exc
        raise StoreError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ change notifications

    async def data_version(self) -> int:
        """Changes whenever new work is committed (by any process): a counter fed by
        ``LISTEN hookcast_work``, so calling it costs nothing. The listening connection
        is opened on first use and re-opened if it drops (which also bumps the counter,
        since a notification may have been missed meanwhile)."""
        disconnected = self._listener is None or self._listener.is_closed()
        idle = self._listen_task is None or self._listen_task.done()
        if disconnected and idle and not self._closing:
            self._listen_task = task = asyncio.create_task(self._listen())
            if self._version == 0:
                # the first call waits for the connection, so no commit is missed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 5)
        return self._version

    def _on_notify(self, *_: object) -> None:
        self._version += 1

    async def _listen(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "hookcast-listen"}
                )
                await conn.add_listener(CHANNEL, self._on_notify)
            except _ERRORS as exc:
                log.warning("store.listen_failed", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._listener = conn
            self._version += 1
            return
