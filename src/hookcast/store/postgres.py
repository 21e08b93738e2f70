"""The server database: PostgreSQL through asyncpg, a pool of connections per process.

Transactions are retried when PostgreSQL picks them as a deadlock victim (rolled back
whole, so running them again is safe). Committed work is announced on a channel
(``NOTIFY``, once per transaction that asks for it); a listening connection, re-opened if
it drops, turns the notifications into a counter that idle workers watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
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


_INSERTS: dict[tuple[object, ...], str] = {}


def combined_insert_sql(
    parts: tuple[tuple[Table, tuple[str, ...]], ...], *, notify: bool = False
) -> str:
    """``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`` for each table, the
    first ones as data-modifying CTEs of the last, numbered one after the other; with
    *notify*, all of them CTEs of a ``pg_notify`` (sent when the statement commits)."""
    key = (notify, *((t.name, names) for t, names in parts))
    sql = _INSERTS.get(key)
    if sql is None:
        statements, n = [], 0
        for table, names in parts:
            arrays = ", ".join(f"${n + i + 1}::{array_type(table, c)}" for i, c in enumerate(names))
            n += len(names)
            statements.append(
                f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
                "ON CONFLICT DO NOTHING"
            )
        if notify:
            statements.append(f"SELECT pg_notify('{CHANNEL}', '')")
        *first, last = statements
        ctes = ", ".join(f"w{i} AS ({s})" for i, s in enumerate(first))
        sql = _INSERTS[key] = f"WITH {ctes} {last}" if ctes else last
    return sql


_COMMIT = "COMMIT"
_LOCK = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest"
#: one round trip (the simple query protocol takes both); delivered at commit
_NOTIFY_AND_COMMIT = f"NOTIFY {CHANNEL}; COMMIT"


async def _in_transaction(conn: Conn, work: Work[T]) -> T:
    """*work* as one transaction (see :class:`PostgresTx` for the round trips it saves).
    Rolled back if *work* fails (or, when the connection is busy because the task was
    cancelled mid-statement, by the pool on release)."""
    tx = PostgresTx(conn, writing=True)
    try:
        result = await work(tx)
        await tx.finish()
    except BaseException:
        if tx.begun:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    return result


async def _keep_session(conn: Conn) -> None:
    """The pool's reset: nothing to reset (see :meth:`PostgresDatabase.open`)."""


_LOCKING_OR_WRITING = re.compile(r"\bFOR\s+(UPDATE|SHARE|NO\s+KEY|KEY)\b|\bpg_\w+\(", re.I)


@functools.lru_cache(maxsize=4096)
def is_plain_read(sql: str) -> bool:
    """A ``SELECT`` that neither locks rows nor calls a server function with effects: it
    sees the same committed data whether it runs inside the transaction or before it."""
    return sql.lstrip()[:6].upper() == "SELECT" and not _LOCKING_OR_WRITING.search(sql)


class PostgresTx:
    """A transaction's statements, sent with as few round trips as they allow.

    * ``BEGIN`` waits until a statement needs it: plain reads before the first write run
      on their own (under READ COMMITTED every statement takes a fresh snapshot, inside a
      transaction or not, so they see the same rows), and a transaction whose only write
      is one statement needs no ``BEGIN`` and no ``COMMIT`` at all.
    * Inserts wait and go out together, as one statement of data-modifying CTEs, just
      before the next other statement or at the end: an ingest's events and deliveries,
      and its ``NOTIFY``, cost one round trip.
    """

    dialect = _PG
    __slots__ = ("_inserts", "begun", "conn", "notified", "writing")

    def __init__(self, conn: Conn, *, writing: bool = False) -> None:
        self.conn = conn
        self.notified = False
        #: a write transaction (else a read: no BEGIN ever)
        self.writing = writing
        self.begun = False
        self._inserts: list[tuple[Table, tuple[str, ...], Sequence[Sequence[Any]]]] = []

    async def _prepare(self, text: str) -> None:
        if self._inserts or (self.writing and not self.begun and not is_plain_read(text)):
            await self.begin()
            await self.flush()

    async def begin(self) -> None:
        if self.writing and not self.begun:
            self.begun = True
            await self.conn.execute("BEGIN")

    async def connection(self) -> Conn:
        """The connection, for a statement of the queue's own, inside the transaction."""
        await self.begin()
        await self.flush()
        return self.conn

    async def rows(self, sql: str, **args: Any) -> list[Row]:
        compiled = compile_sql(sql, _PG)
        await self._prepare(compiled.text)
        return cast("list[Row]", await self.conn.fetch(compiled.text, *compiled.args(args)))

    async def row(self, sql: str, **args: Any) -> Row | None:
        compiled = compile_sql(sql, _PG)
        await self._prepare(compiled.text)
        found = await self.conn.fetchrow(compiled.text, *compiled.args(args))
        return cast("Row | None", found)

    async def value(self, sql: str, **args: Any) -> Any:
        compiled = compile_sql(sql, _PG)
        await self._prepare(compiled.text)
        return await self.conn.fetchval(compiled.text, *compiled.args(args))

    async def run(self, sql: str, **args: Any) -> int:
        compiled = compile_sql(sql, _PG)
        await self._prepare(compiled.text)
        return count(await self.conn.execute(compiled.text, *compiled.args(args)))

    async def insert(
        self, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        if rows:
            if any(t is table for t, _, _ in self._inserts):
                # sibling CTEs would not see each other's rows: the first ones go now
                await self.begin()
                await self.flush()
            self._inserts.append((table, tuple(columns), rows))

    async def flush(self, *, notify: bool = False) -> None:
        """Send the waiting inserts (one statement, whatever the number of tables), with
        the notification when *notify*."""
        if not self._inserts:
            return
        parts, self._inserts = self._inserts, []
        sql = combined_insert_sql(tuple((t, names) for t, names, _ in parts), notify=notify)
        args: list[Any] = []
        for _, names, rows in parts:
            args.extend(columns_of(rows, len(names)))
        await self.conn.execute(sql, *args)

    async def lock(self, names: Iterable[str]) -> None:
        keys = sorted({lock_key(n) for n in names})  # one order everywhere: no deadlock
        if not keys:
            return
        if self.writing and not self.begun and not self._inserts:
            # BEGIN and the locks in one round trip (the simple query protocol takes both;
            # the keys are integers, written into the text)
            self.begun = True
            literal = "{" + ",".join(map(str, keys)) + "}"
            await self.conn.execute(f"BEGIN; {_LOCK}('{literal}'::bigint[]) AS k")
            return
        await self.begin()
        await self.flush()
        await self.conn.execute(f"{_LOCK}($1::bigint[]) AS k", keys)

    def notify(self) -> None:
        self.notified = True

    async def finish(self) -> None:
        """The end of a write: ``COMMIT`` (with the notification) when a transaction was
        begun, else the one waiting statement alone."""
        if self.begun:
            await self.flush()
            await self.conn.execute(_NOTIFY_AND_COMMIT if self.notified else _COMMIT)
        elif self._inserts:
            await self.flush(notify=self.notified)
        elif self.notified:
            await self.conn.execute(f"NOTIFY {CHANNEL}")


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
                # hookcast keeps no session state on pooled connections (locks and
                # settings are per transaction, LISTEN has its own connection), so a
                # connection goes back to the pool without asyncpg's reset query: one
                # round trip less per use (an open transaction is still rolled back)
                reset=_keep_session,
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

    async def statement(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One statement in its own implicit transaction: atomic, and one round trip (no
        BEGIN and COMMIT around it)."""
        return await self._retrying(lambda conn: conn.fetch(sql, *args))

    async def write(self, work: Work[T]) -> T:
        return await self._retrying(lambda conn: _in_transaction(conn, work))

    async def _retrying(self, run: Callable[[Conn], Awaitable[T]]) -> T:
        """*run* on a pooled connection, again when PostgreSQL picked it as a deadlock or
        serialisation victim (rolled back whole, so running it again is safe)."""
        pool = self._require_pool()
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with pool.acquire() as conn:
                    return await run(conn)
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
