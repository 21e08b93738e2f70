"""The server store: PostgreSQL through asyncpg.

All SQL for PostgreSQL lives here. The semantics are those of the embedded store
(:mod:`hookcast.store.sqlite`), method by method; what differs is how they are made safe
when many processes share the database:

* the queue claims with ``FOR UPDATE SKIP LOCKED`` in one statement that leases due
  deliveries and reclaims expired leases alike;
* completions, deferrals and releases are fenced by the lease token, in one batched
  statement each (``UPDATE ... FROM unnest(...)``);
* an ingest batch is one transaction; the checks that SQLite gets from its single writer
  (idempotency keys, the catch-all subscription of an endpoint, dynamic endpoints) take
  transaction-scoped advisory locks, in a fixed order, before they read;
* new work sends ``NOTIFY hookcast_work``; :meth:`PostgresStore.data_version` is a counter
  fed by a ``LISTEN`` connection (it reconnects by itself), so an idle worker in another
  process polls it for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import asyncpg
import orjson

from hookcast.domain import storable
from hookcast.domain.config import ProjectConfig, stored_config
from hookcast.domain.errors import (
    ConflictError,
    LeaseLostError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    HELD_US,
    ApiKey,
    Attempt,
    BatchJob,
    BatchKind,
    BatchStatus,
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    Event,
    EventKind,
    EventStatus,
    FilterConfig,
    Project,
    Secret,
    Subscription,
)
from hookcast.domain.paging import Direction, Page, PageRequest
from hookcast.domain.ports import (
    BroadcastProgress,
    ChunkResult,
    ClaimedDelivery,
    Completion,
    Deferral,
    DeliveryFilter,
    EventFilter,
    FanoutJob,
    IngestResult,
    NewEvent,
    QueueStats,
    delivery_filter_from_json,
    event_filter_from_json,
)
from hookcast.domain.routing import (
    FilterCache,
    first_match,
    group_by_endpoint,
    strategy_for,
)

# the row mapping is shared with the embedded store: the same columns, the same values
from hookcast.store.rows import complete_isolated, delivery_row, event_row, release_step_us
from hookcast.store.sqlite import (
    _ATTEMPT_COLS,
    _DELIVERY_COLS,
    _ENDPOINT_COLS,
    _EVENT_COLS,
    _JOB_COLS,
    _KEY_COLS,
    _PROJECT_COLS,
    _SUB_COLS,
    _attempt,
    _attempt_row,
    _delivery,
    _endpoint,
    _endpoint_row,
    _event,
    _job,
    _json,
    _key,
    _project,
    _subscription,
    _subscription_row,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")
log = logging.getLogger("hookcast.store")

#: the channel on which committed work is announced to workers in other processes
CHANNEL = "hookcast_work"
_DEADLOCK_RETRIES = 5
_CLAIMABLE = "('Scheduled', 'Retry', 'Processing')"


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg understands for a hookcast PostgreSQL URL."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql+asyncpg", "postgres"):
        scheme = "postgresql"
    return f"{scheme}://{rest}"


def _seq(r: asyncpg.Record) -> Sequence[Any]:
    return cast("Sequence[Any]", r)


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def _lock_key(*parts: str) -> int:
    """A 64-bit advisory lock key for a name (a collision only serialises a little more)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _advisory_locks(c: Conn, keys: Iterable[int]) -> None:
    """Take transaction-scoped advisory locks in ascending order (so never a deadlock)."""
    ordered = sorted(set(keys))
    if ordered:
        await c.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", ordered
        )


async def _notify(c: Conn) -> None:
    """Wake workers in other processes (delivered when the transaction commits)."""
    await c.execute(f"NOTIFY {CHANNEL}")


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to columns, for ``unnest``."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i, value in enumerate(row):
            cols[i].append(value)
    return cols


class _Args:
    """Positional parameters: ``args(value)`` appends *value* and returns its ``$n``."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


# ---------------------------------------------------------------- pagination


async def _paged(
    c: Conn,
    table: str,
    cols: str,
    where: list[str],
    params: list[Any],
    page: PageRequest,
    mapper: Callable[[Sequence[Any]], T],
) -> Page[T]:
    """Keyset pagination on ``id`` in Convoy's shape (fetch one extra row)."""
    base = " AND ".join(where) if where else "TRUE"
    nxt_param = f"${len(params) + 1}"
    desc = page.descending
    if page.direction is Direction.PREV and page.prev_cursor:
        # prev_page_cursor is the first item of the current page: the page before it
        # ends just before that item (exclusive), whereas next cursors are inclusive
        op, order = (">", "ASC") if desc else ("<", "DESC")
        cursor: str | None = page.prev_cursor
    else:
        op, order = ("<=", "DESC") if desc else (">=", "ASC")
        cursor = page.next_cursor
    sql = f"SELECT {cols} FROM {table} WHERE {base}"
    args = list(params)
    if cursor:
        sql += f" AND id {op} {nxt_param}"
        args.append(cursor)
    sql += f" ORDER BY id {order} LIMIT ${len(args) + 1}"
    args.append(page.per_page + 1)
    rows = [_seq(r) for r in await c.fetch(sql, *args)]
    backwards = page.direction is Direction.PREV and bool(page.prev_cursor)
    extra = len(rows) > page.per_page
    rows = rows[: page.per_page]
    if backwards:
        rows.reverse()
    items = [mapper(r) for r in rows]
    if not rows:
        return Page(items, page.per_page, False, False, "", "")
    first_id, last_id = rows[0][0], rows[-1][0]
    before_op = ">" if desc else "<"
    after_op = "<" if desc else ">"

    async def exists(cond: str, value: str) -> bool:
        row = await c.fetchrow(
            f"SELECT 1 FROM {table} WHERE {base} AND id {cond} {nxt_param} LIMIT 1",
            *params,
            value,
        )
        return row is not None

    has_prev = extra if backwards else await exists(before_op, first_id)
    has_next = await exists(after_op, last_id) if backwards else extra
    next_cursor = ""
    if has_next:
        nxt = await c.fetchval(
            f"SELECT id FROM {table} WHERE {base} AND id {after_op} {nxt_param} "
            f"ORDER BY id {'DESC' if desc else 'ASC'} LIMIT 1",
            *params,
            last_id,
        )
        next_cursor = nxt or ""
    return Page(items, page.per_page, has_next, has_prev, next_cursor, first_id)


def _event_where(project_id: str, flt: EventFilter) -> tuple[list[str], list[Any]]:
    a = _Args()
    where = [f"project_id = {a(project_id)}"]
    if flt.source_ids:
        where.append("FALSE")  # no event has a source (outgoing projects only)
    if flt.endpoint_ids:
        where.append(
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND "
            f"d.endpoint_id = ANY({a(list(flt.endpoint_ids))}::text[]))"
        )
    if flt.idempotency_key:
        where.append(f"idempotency_key = {a(flt.idempotency_key)}")
    if flt.query:
        q = a(flt.query)
        where.append(f"(event_type = {q}::text OR id = {q}::text OR idempotency_key = {q}::text)")
    _time_window(where, a, flt.start_us, flt.end_us)
    return where, a.values


def _delivery_where(project_id: str, flt: DeliveryFilter) -> tuple[list[str], list[Any]]:
    a = _Args()
    where = [f"project_id = {a(project_id)}"]
    if flt.endpoint_ids:
        where.append(f"endpoint_id = ANY({a(list(flt.endpoint_ids))}::text[])")
    for column, value in (
        ("event_id", flt.event_id),
        ("subscription_id", flt.subscription_id),
        ("idempotency_key", flt.idempotency_key),
        ("event_type", flt.event_type),
    ):
        if value:
            where.append(f"{column} = {a(value)}")
    if flt.statuses:
        where.append(f"status = ANY({a([s.value for s in flt.statuses])}::text[])")
    _time_window(where, a, flt.start_us, flt.end_us)
    return where, a.values


def _time_window(where: list[str], a: _Args, start: int | None, end: int | None) -> None:
    if start is not None:
        where.append(f"created_at_us >= {a(start)}::bigint")
    if end is not None:
        where.append(f"created_at_us <= {a(end)}::bigint")


def _batch_where(job: BatchJob) -> tuple[list[str], list[Any]]:
    if job.kind is BatchKind.RETRY:
        return _delivery_where(job.project_id, delivery_filter_from_json(job.filter))
    return _event_where(job.project_id, event_filter_from_json(job.filter))


_ENDPOINT_SETS = ", ".join(
    f"{col.strip()} = ${i}" for i, col in enumerate(_ENDPOINT_COLS.split(",")[1:], start=2)
)
_ENDPOINT_VALUES = ",".join(f"${i}" for i in range(1, len(_ENDPOINT_COLS.split(",")) + 1))
_SUB_SETS = ", ".join(
    f"{col.strip()} = ${i}" for i, col in enumerate(_SUB_COLS.split(",")[1:], start=2)
)
_SUB_VALUES = ",".join(f"${i}" for i in range(1, len(_SUB_COLS.split(",")) + 1))

_REQUEUE = (
    "UPDATE deliveries SET status = 'Scheduled', due_at_us = $1, attempts = 0, "
    "lease_token = NULL, description = 'requeued by an operator', updated_at_us = $1 "
)


async def _requeue_deliveries(c: Conn, project_id: str, ids: list[str], now_us: int) -> int:
    """Batch retry: failed or discarded deliveries go back in the queue."""
    if not ids:
        return 0
    return _count(
        await c.execute(
            _REQUEUE + "WHERE project_id = $2 AND status IN ('Failure', 'Discarded') "
            "AND id = ANY($3::text[])",
            now_us,
            project_id,
            ids,
        )
    )


async def _requeue_finished(c: Conn, project_id: str, event_ids: list[str], now_us: int) -> int:
    """Replay: every finished delivery of these events goes back in the queue."""
    if not event_ids:
        return 0
    return _count(
        await c.execute(
            _REQUEUE + "WHERE project_id = $2 AND status IN ('Success', 'Failure', 'Discarded') "
            "AND event_id = ANY($3::text[])",
            now_us,
            project_id,
            event_ids,
        )
    )


async def _disable(
    c: Conn, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
) -> None:
    """Disable an endpoint and hold (not discard) its pending deliveries."""
    await c.execute(
        "UPDATE endpoints SET status = 'inactive', disabled_reason = $1, probe_at_us = $2, "
        "updated_at_us = $3 WHERE id = $4",
        reason,
        probe_at_us,
        now_us,
        endpoint_id,
    )
    await c.execute(
        "UPDATE deliveries SET due_at_us = $1, updated_at_us = $2 WHERE endpoint_id = $3 "
        "AND status IN ('Scheduled', 'Retry')",
        HELD_US,
        now_us,
        endpoint_id,
    )


async def _endpoint_by_id(c: Conn, project_id: str, endpoint_id: str) -> Endpoint | None:
    row = await c.fetchrow(
        f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = $1 AND project_id = $2",
        endpoint_id,
        project_id,
    )
    return None if row is None else _endpoint(_seq(row))


async def _insert_subscription(c: Conn, sub: Subscription) -> None:
    await c.execute(
        f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES ({_SUB_VALUES})", *_subscription_row(sub)
    )


_INSERT_DELIVERIES = (
    "INSERT INTO deliveries (id, project_id, event_id, endpoint_id, subscription_id, "
    "event_type, status, delivery_mode, idempotency_key, retry_limit, strategy, "
    "interval_seconds, max_retry_seconds, due_at_us, created_at_us, updated_at_us) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::text[], $12::int[], "
    "$13::int[], $14::bigint[], $15::bigint[], $16::bigint[])"
)


# ---------------------------------------------------------------- the store


class PostgresStore:
    """The server store. ``open()`` before use; ``close()`` after."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = asyncpg_dsn(url)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._filters = FilterCache()
        self._configs: dict[tuple[str, int], ProjectConfig] = {}
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
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
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

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._require_pool()
        try:
            async with pool.acquire() as c:
                return await fn(c)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run *fn* in one transaction; retried when PostgreSQL picks it as a deadlock
        victim (it was rolled back whole, so running it again is safe)."""
        pool = self._require_pool()
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with pool.acquire() as c, c.transaction():
                    return await fn(c)
            except (
                asyncpg.exceptions.DeadlockDetectedError,
                asyncpg.exceptions.SerializationError,
            ) as exc:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise StoreError(f"database error: {exc}") from exc
                await asyncio.sleep(0.005 * (attempt + 1))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("store.listen_failed", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._listener = conn
            self._version += 1
            return

    # ------------------------------------------------------------ projects and keys

    async def create_project(self, project: Project) -> None:
        row = (
            project.id,
            project.name,
            project.type,
            project.config.model_dump_json(),
            project.created_at_us,
            project.updated_at_us,
        )
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO projects ({_PROJECT_COLS}) VALUES ($1,$2,$3,$4,$5,$6)", *row
            )
        )

    async def list_projects(self) -> list[Project]:
        rows = await self._read(
            lambda c: c.fetch(f"SELECT {_PROJECT_COLS} FROM projects ORDER BY id")
        )
        return [_project(_seq(r)) for r in rows]

    async def get_project(self, project_id: str) -> Project | None:
        row = await self._read(
            lambda c: c.fetchrow(f"SELECT {_PROJECT_COLS} FROM projects WHERE id = $1", project_id)
        )
        return None if row is None else _project(_seq(row))

    async def update_project(self, project: Project) -> None:
        args = (project.name, project.config.model_dump_json(), project.updated_at_us, project.id)
        await self._write(
            lambda c: c.execute(
                "UPDATE projects SET name = $1, config = $2, updated_at_us = $3 WHERE id = $4",
                *args,
            )
        )

    async def delete_project(self, project_id: str) -> bool:
        async def run(c: Conn) -> bool:
            if _count(await c.execute("DELETE FROM projects WHERE id = $1", project_id)) == 0:
                return False
            for table in (
                "api_keys",
                "endpoints",
                "subscriptions",
                "events",
                "deliveries",
                "attempts",
            ):
                await c.execute(f"DELETE FROM {table} WHERE project_id = $1", project_id)
            return True

        return await self._write(run)

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        row = (
            key.id,
            key.mask,
            key.name,
            key.role.value,
            key.project_id,
            key.can_broadcast,
            key.expires_at_us,
            key.revoked_at_us,
            key.created_at_us,
            key_hash,
        )
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)", *row
            )
        )

    async def find_api_key(self, mask: str) -> tuple[ApiKey, str] | None:
        row = await self._read(
            lambda c: c.fetchrow(f"SELECT {_KEY_COLS} FROM api_keys WHERE mask = $1", mask)
        )
        return None if row is None else (_key(_seq(row)), row[9])

    async def list_api_keys(self, project_id: str | None) -> list[ApiKey]:
        """The keys of a project, oldest first; every key when *project_id* is None."""
        if project_id:
            query = f"SELECT {_KEY_COLS} FROM api_keys WHERE project_id = $1 ORDER BY id"
            rows = await self._read(lambda c: c.fetch(query, project_id))
        else:
            query = f"SELECT {_KEY_COLS} FROM api_keys ORDER BY id"
            rows = await self._read(lambda c: c.fetch(query))
        return [_key(_seq(r)) for r in rows]

    async def revoke_api_key(
        self, key_id: str, project_id: str | None, now_us: int
    ) -> ApiKey | None:
        """Revoke a key (of *project_id*, or of any project when None); revoking twice
        keeps the first time. None when there is no such key."""
        where = "id = $2 AND ($3::text IS NULL OR project_id = $3)"

        async def run(c: Conn) -> ApiKey | None:
            row = await c.fetchrow(
                "UPDATE api_keys SET revoked_at_us = COALESCE(revoked_at_us, $1) "
                f"WHERE {where} RETURNING {_KEY_COLS}",
                now_us,
                key_id,
                project_id or None,
            )
            return None if row is None else _key(_seq(row))

        return await self._write(run)

    # ------------------------------------------------------------ endpoints

    async def create_endpoint(self, endpoint: Endpoint) -> None:
        row = _endpoint_row(endpoint)
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLS}) VALUES ({_ENDPOINT_VALUES})", *row
            )
        )

    async def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        return await self._read(lambda c: _endpoint_by_id(c, project_id, endpoint_id))

    async def list_endpoints(
        self, project_id: str, owner_id: str | None, q: str | None, page: PageRequest
    ) -> Page[Endpoint]:
        a = _Args()
        where = [f"project_id = {a(project_id)}"]
        if owner_id:
            where.append(f"owner_id = {a(owner_id)}")
        if q:
            # SQLite's LIKE ignores case (for ASCII); ILIKE is PostgreSQL's equivalent
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(f"name ILIKE {a(pattern)} ESCAPE '\\'")
        return await self._read(
            lambda c: _paged(c, "endpoints", _ENDPOINT_COLS, where, a.values, page, _endpoint)
        )

    async def update_endpoint(self, endpoint: Endpoint) -> None:
        row = _endpoint_row(endpoint)

        async def run(c: Conn) -> None:
            status = await c.execute(
                f"UPDATE endpoints SET {_ENDPOINT_SETS} "
                f"WHERE id = $1 AND project_id = ${len(row) + 1}",
                *row,
                endpoint.project_id,
            )
            if _count(status) == 0:
                raise NotFoundError("endpoint not found")

        await self._write(run)

    async def delete_endpoint(self, project_id: str, endpoint_id: str) -> bool:
        async def run(c: Conn) -> bool:
            status = await c.execute(
                "DELETE FROM endpoints WHERE id = $1 AND project_id = $2", endpoint_id, project_id
            )
            if _count(status) == 0:
                return False
            await c.execute("DELETE FROM subscriptions WHERE endpoint_id = $1", endpoint_id)
            return True

        return await self._write(run)

    # ------------------------------------------------------------ subscriptions

    async def create_subscription(self, sub: Subscription, *, allow_multiple: bool) -> None:
        async def run(c: Conn) -> None:
            # the same lock as ingest's catch-all subscription: one check-then-insert at once
            await _advisory_locks(c, [_lock_key("sub", sub.endpoint_id)])
            if await _endpoint_by_id(c, sub.project_id, sub.endpoint_id) is None:
                raise ValidationError("endpoint not found in this project")
            if not allow_multiple and await c.fetchrow(
                "SELECT 1 FROM subscriptions WHERE endpoint_id = $1 LIMIT 1", sub.endpoint_id
            ):
                raise ConflictError("a subscription for this endpoint already exists")
            await _insert_subscription(c, sub)

        await self._write(run)

    async def get_subscription(self, project_id: str, sub_id: str) -> Subscription | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE id = $1 AND project_id = $2",
                sub_id,
                project_id,
            )
        )
        return None if row is None else _subscription(_seq(row))

    async def list_subscriptions(
        self, project_id: str, endpoint_ids: Sequence[str], name: str | None, page: PageRequest
    ) -> Page[Subscription]:
        a = _Args()
        where = [f"project_id = {a(project_id)}"]
        if endpoint_ids:
            where.append(f"endpoint_id = ANY({a(list(endpoint_ids))}::text[])")
        if name:
            where.append(f"name = {a(name)}")
        return await self._read(
            lambda c: _paged(c, "subscriptions", _SUB_COLS, where, a.values, page, _subscription)
        )

    async def update_subscription(self, sub: Subscription) -> None:
        row = _subscription_row(sub)

        async def run(c: Conn) -> None:
            if await _endpoint_by_id(c, sub.project_id, sub.endpoint_id) is None:
                raise ValidationError("endpoint not found in this project")
            status = await c.execute(
                f"UPDATE subscriptions SET {_SUB_SETS} "
                f"WHERE id = $1 AND project_id = ${len(row) + 1}",
                *row,
                sub.project_id,
            )
            if _count(status) == 0:
                raise NotFoundError("subscription not found")

        await self._write(run)

    async def delete_subscription(self, project_id: str, sub_id: str) -> bool:
        async def run(c: Conn) -> bool:
            status = await c.execute(
                "DELETE FROM subscriptions WHERE id = $1 AND project_id = $2", sub_id, project_id
            )
            return _count(status) > 0

        return await self._write(run)

    # ------------------------------------------------------------ ingest (group commit)

    async def ingest(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        """Route and store a batch of events in one transaction."""
        if not batch:
            return []
        return await self._write(lambda c: _Ingest(c, self._filters).run(batch))

    # ------------------------------------------------------------ events

    async def get_event(self, project_id: str, event_id: str) -> Event | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_EVENT_COLS} FROM events WHERE id = $1 AND project_id = $2",
                event_id,
                project_id,
            )
        )
        return None if row is None else _event(_seq(row))

    async def list_events(
        self, project_id: str, flt: EventFilter, page: PageRequest
    ) -> Page[Event]:
        where, params = _event_where(project_id, flt)
        return await self._read(
            lambda c: _paged(c, "events", _EVENT_COLS, where, params, page, _event)
        )

    # ------------------------------------------------------------ deliveries and attempts

    async def get_delivery(self, project_id: str, delivery_id: str) -> Delivery | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE id = $1 AND project_id = $2",
                delivery_id,
                project_id,
            )
        )
        return None if row is None else _delivery(_seq(row))

    async def list_deliveries(
        self, project_id: str, flt: DeliveryFilter, page: PageRequest
    ) -> Page[Delivery]:
        where, params = _delivery_where(project_id, flt)
        return await self._read(
            lambda c: _paged(c, "deliveries", _DELIVERY_COLS, where, params, page, _delivery)
        )

    async def requeue_delivery(
        self, project_id: str, delivery_id: str, expected: Sequence[DeliveryStatus], now_us: int
    ) -> Delivery | None:
        """Put a finished delivery back in the queue, due now, with a fresh attempt budget.
        Returns None when it was not in one of the *expected* statuses (a no-op)."""

        async def run(c: Conn) -> Delivery | None:
            row = await c.fetchrow(
                "UPDATE deliveries SET status = 'Scheduled', due_at_us = $1, attempts = 0, "
                "lease_token = NULL, description = '', updated_at_us = $1 "
                "WHERE id = $2 AND project_id = $3 AND status = ANY($4::text[]) "
                f"RETURNING {_DELIVERY_COLS}",
                now_us,
                delivery_id,
                project_id,
                [s.value for s in expected],
            )
            if row is None:
                return None
            await _notify(c)
            return _delivery(_seq(row))

        return await self._write(run)

    async def list_attempts(self, project_id: str, delivery_id: str) -> list[Attempt]:
        rows = await self._read(
            lambda c: c.fetch(
                f"SELECT {_ATTEMPT_COLS} FROM attempts WHERE delivery_id = $1 "
                "AND project_id = $2 ORDER BY id",
                delivery_id,
                project_id,
            )
        )
        return [_attempt(_seq(r)) for r in rows]

    async def get_attempt(
        self, project_id: str, delivery_id: str, attempt_id: str
    ) -> Attempt | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_ATTEMPT_COLS} FROM attempts WHERE id = $1 AND delivery_id = $2 "
                "AND project_id = $3",
                attempt_id,
                delivery_id,
                project_id,
            )
        )
        return None if row is None else _attempt(_seq(row))

    # ------------------------------------------------------------ the queue

    async def claim_due(
        self, *, now_us: int, limit: int, lease_us: int, lease_token: str
    ) -> list[ClaimedDelivery]:
        """Lease up to *limit* due deliveries (expired leases included) in one statement:
        rows another worker is claiming right now are skipped, never shared."""
        return await self._write(lambda c: self._claim(c, now_us, limit, lease_us, lease_token))

    async def _claim(
        self, c: Conn, now_us: int, limit: int, lease_us: int, token: str
    ) -> list[ClaimedDelivery]:
        # the lease lasts the endpoint's own timeout plus a margin; the picked columns are
        # the row as it was before the claim (its status tells a reclaim)
        records = await c.fetch(
            "WITH picked AS (SELECT id, status, due_at_us, updated_at_us FROM deliveries "
            f"WHERE status IN {_CLAIMABLE} AND due_at_us <= $1 "
            "ORDER BY due_at_us LIMIT $2 FOR UPDATE SKIP LOCKED) "
            "UPDATE deliveries d SET status = 'Processing', lease_token = $3, "
            "due_at_us = $4::bigint + COALESCE((SELECT e.http_timeout FROM endpoints e "
            "WHERE e.id = d.endpoint_id), 30)::bigint * 1000000, "
            "attempts = d.attempts + 1, updated_at_us = $1 "
            "FROM picked p WHERE d.id = p.id RETURNING d.id, d.project_id, d.event_id, "
            "d.endpoint_id, d.subscription_id, d.event_type, d.status, d.delivery_mode, "
            "d.idempotency_key, d.attempts, d.retry_limit, d.strategy, d.interval_seconds, "
            "d.max_retry_seconds, d.due_at_us, d.latency_us, d.description, d.created_at_us, "
            "p.updated_at_us, p.status, p.due_at_us",
            now_us,
            limit,
            token,
            now_us + lease_us,
        )
        if not records:
            return []
        rows = sorted((_seq(r) for r in records), key=lambda r: (r[20], r[0]))
        event_ids = list({r[2] for r in rows})
        events = {
            r[0]: (bytes(r[1]), orjson.loads(r[2]))
            for r in await c.fetch(
                "SELECT id, data, headers FROM events WHERE id = ANY($1::text[])", event_ids
            )
        }
        endpoint_ids = list({r[3] for r in rows})
        endpoints = {
            r[0]: _endpoint(_seq(r))
            for r in await c.fetch(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = ANY($1::text[])", endpoint_ids
            )
        }
        configs = await self._project_configs(c, {r[1] for r in rows})
        claimed = []
        for r in rows:
            d = _delivery(r[:19])
            before = DeliveryStatus(r[19])
            reclaimed = before is DeliveryStatus.PROCESSING
            previous = DeliveryStatus.RETRY if reclaimed else before
            data, headers = events.get(d.event_id, (b"null", {}))
            claimed.append(
                ClaimedDelivery(
                    d,
                    token,
                    reclaimed,
                    previous,
                    data,
                    headers,
                    endpoints.get(d.endpoint_id),
                    configs.get(d.project_id),
                )
            )
        return claimed

    async def _project_configs(self, c: Conn, project_ids: set[str]) -> dict[str, ProjectConfig]:
        out: dict[str, ProjectConfig] = {}
        for pid, updated, text in await c.fetch(
            "SELECT id, updated_at_us, config FROM projects WHERE id = ANY($1::text[])",
            list(project_ids),
        ):
            cfg = self._configs.get((pid, updated))
            if cfg is None:
                cfg = stored_config(text)
                if len(self._configs) > 10_000:
                    self._configs.clear()
                self._configs[(pid, updated)] = cfg
            out[pid] = cfg
        return out

    async def complete(self, completions: Sequence[Completion], now_us: int) -> int:
        """Record outcomes and attempts; each update is fenced by its lease token.
        Returns how many deliveries were updated (the rest had lost their lease). A batch
        that cannot be written is written again row by row (see rows.complete_isolated)."""

        async def run(c: Conn, batch: Sequence[Completion]) -> int:
            ordered = sorted(batch, key=lambda comp: comp.delivery_id)
            # disable first: a retry of an endpoint disabled now, or before, is held
            for comp in batch:
                if comp.attempt is None:
                    continue
                if comp.breaker is not None:
                    await c.execute(
                        "UPDATE endpoints SET breaker = $1 WHERE id = $2",
                        _json(comp.breaker),
                        comp.attempt.endpoint_id,
                    )
                if comp.disable_endpoint:
                    await _disable(
                        c, comp.attempt.endpoint_id, comp.disable_endpoint, comp.probe_at_us, now_us
                    )
            updated = _count(
                await c.execute(
                    "UPDATE deliveries d SET status = u.status, due_at_us = CASE WHEN "
                    "u.status = 'Retry' AND EXISTS (SELECT 1 FROM endpoints e WHERE "
                    f"e.id = d.endpoint_id AND e.status = 'inactive') THEN {HELD_US} "
                    "ELSE u.due_at_us END, "
                    "latency_us = COALESCE(u.latency_us, d.latency_us), "
                    "description = u.description, lease_token = NULL, updated_at_us = $7 "
                    "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
                    "$5::bigint[], $6::text[]) "
                    "AS u(id, lease_token, status, due_at_us, latency_us, description) "
                    "WHERE d.id = u.id AND d.lease_token = u.lease_token "
                    "AND d.status = 'Processing'",
                    [comp.delivery_id for comp in ordered],
                    [comp.lease_token for comp in ordered],
                    [comp.status.value for comp in ordered],
                    [comp.due_at_us for comp in ordered],
                    [comp.latency_us for comp in ordered],
                    [storable.text(comp.description, 2000) for comp in ordered],
                    now_us,
                )
            )
            attempts = [_attempt_row(comp.attempt) for comp in batch if comp.attempt]
            if attempts:
                await c.execute(
                    f"INSERT INTO attempts ({_ATTEMPT_COLS}) SELECT * FROM unnest("
                    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
                    "$7::text[], $8::text[], $9::text[], $10::int[], $11::text[], $12::text[], "
                    "$13::boolean[], $14::bigint[], $15::bigint[], $16::bigint[])",
                    *_columns(attempts, 16),
                )
            return updated

        return await complete_isolated(
            lambda batch: self._write(lambda c: run(c, batch)), completions
        )

    async def release(self, leases: Sequence[tuple[str, str]], now_us: int) -> int:
        """Give back leases without an attempt (shutdown): due now, attempt not counted."""
        if not leases:
            return 0
        ordered = sorted(leases)

        async def run(c: Conn) -> int:
            n = _count(
                await c.execute(
                    "UPDATE deliveries d SET status = 'Scheduled', due_at_us = $3, "
                    "lease_token = NULL, attempts = GREATEST(d.attempts - 1, 0), "
                    "updated_at_us = $3 "
                    "FROM unnest($1::text[], $2::text[]) AS u(id, lease_token) "
                    "WHERE d.id = u.id AND d.lease_token = u.lease_token "
                    "AND d.status = 'Processing'",
                    [d for d, _ in ordered],
                    [t for _, t in ordered],
                    now_us,
                )
            )
            if n:
                await _notify(c)
            return n

        return await self._write(run)

    async def defer(self, deferrals: Sequence[Deferral], now_us: int) -> int:
        """Give leases back unspent: the attempt counted at the claim is undone."""
        if not deferrals:
            return 0
        ordered = sorted(deferrals, key=lambda d: d.delivery_id)

        async def run(c: Conn) -> int:
            return _count(
                await c.execute(
                    "UPDATE deliveries d SET status = u.status, due_at_us = u.due_at_us, "
                    "lease_token = NULL, attempts = GREATEST(d.attempts - 1, 0), "
                    "description = u.description, updated_at_us = $6 "
                    "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
                    "$5::text[]) AS u(id, lease_token, status, due_at_us, description) "
                    "WHERE d.id = u.id AND d.lease_token = u.lease_token "
                    "AND d.status = 'Processing'",
                    [d.delivery_id for d in ordered],
                    [d.lease_token for d in ordered],
                    [d.status.value for d in ordered],
                    [d.due_at_us for d in ordered],
                    [d.description for d in ordered],
                    now_us,
                )
            )

        return await self._write(run)

    async def disable_endpoint(
        self, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
    ) -> None:
        await self._write(lambda c: _disable(c, endpoint_id, reason, probe_at_us, now_us))

    async def enable_endpoint(self, endpoint_id: str, now_us: int, release_rate: float) -> int:
        """Activate, reset health, and release the deliveries held while it was disabled,
        spread at *release_rate* per second (0 = all at once). Returns how many."""

        async def run(c: Conn) -> int:
            await c.execute(
                "UPDATE endpoints SET status = 'active', disabled_reason = '', breaker = NULL, "
                "probe_at_us = NULL, probe_attempts = 0, updated_at_us = $1 WHERE id = $2",
                now_us,
                endpoint_id,
            )
            held = [
                r[0]
                for r in await c.fetch(
                    "SELECT id FROM deliveries WHERE endpoint_id = $1 AND due_at_us = $2 "
                    "AND status IN ('Scheduled', 'Retry') ORDER BY id",
                    endpoint_id,
                    HELD_US,
                )
            ]
            if not held:
                return 0
            step = release_step_us(release_rate)
            await c.execute(
                "UPDATE deliveries d SET due_at_us = u.due_at_us, updated_at_us = $3 "
                "FROM unnest($1::text[], $2::bigint[]) AS u(id, due_at_us) WHERE d.id = u.id",
                held,
                [int(now_us + i * step) for i in range(len(held))],
                now_us,
            )
            await _notify(c)
            return len(held)

        return await self._write(run)

    async def due_probes(self, now_us: int, limit: int) -> list[tuple[Endpoint, ProjectConfig]]:
        async def run(c: Conn) -> list[tuple[Endpoint, ProjectConfig]]:
            rows = await c.fetch(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE probe_at_us IS NOT NULL "
                "AND probe_at_us <= $1 AND status = 'inactive' ORDER BY probe_at_us LIMIT $2",
                now_us,
                limit,
            )
            endpoints = [_endpoint(_seq(r)) for r in rows]
            if not endpoints:
                return []
            configs = await self._project_configs(c, {e.project_id for e in endpoints})
            return [(e, configs[e.project_id]) for e in endpoints if e.project_id in configs]

        return await self._read(run)

    async def reschedule_probe(self, endpoint_id: str, probe_at_us: int, attempts: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE endpoints SET probe_at_us = $1, probe_attempts = $2 WHERE id = $3",
                probe_at_us,
                attempts,
                endpoint_id,
            )
        )

    async def next_due_at(self) -> int | None:
        value = await self._read(
            lambda c: c.fetchval(
                f"SELECT MIN(due_at_us) FROM deliveries WHERE status IN {_CLAIMABLE}"
            )
        )
        return None if value is None else int(value)

    async def queue_stats(self, now_us: int) -> QueueStats:
        """One pass over the queue index and one over the endpoints table."""

        async def run(c: Conn) -> QueueStats:
            row = await c.fetchrow(
                "SELECT count(*) FILTER (WHERE due_at_us <= $1), "
                "MIN(due_at_us) FILTER (WHERE due_at_us <= $1), "
                "count(*) FILTER (WHERE due_at_us > $1 AND due_at_us < $2), "
                "count(*) FILTER (WHERE due_at_us >= $2) "
                f"FROM deliveries WHERE status IN {_CLAIMABLE}",
                now_us,
                HELD_US,
            )
            assert row is not None  # an aggregate always has a row
            disabled = await c.fetch(
                "SELECT disabled_reason, COUNT(*) FROM endpoints WHERE status = 'inactive' "
                "GROUP BY disabled_reason"
            )
            return QueueStats(
                int(row[0]),
                None if row[1] is None else int(row[1]),
                int(row[2]),
                int(row[3]),
                {str(r[0]): int(r[1]) for r in disabled},
            )

        return await self._read(run)

    # ------------------------------------------------------------ operator actions

    async def replay_event(self, project_id: str, event_id: str, now_us: int) -> int:
        """Send an event again to the endpoints it went to: its finished deliveries go back
        in the queue (those still pending are left alone, so a second call is a no-op)."""

        async def run(c: Conn) -> int:
            n = await _requeue_finished(c, project_id, [event_id], now_us)
            if n:
                await _notify(c)
            return n

        return await self._write(run)

    async def create_batch_job(self, job: BatchJob) -> BatchJob:
        async def run(c: Conn) -> BatchJob:
            # one active batch of a kind per project, even across processes
            await _advisory_locks(c, [_lock_key("batch", job.project_id, job.kind.value)])
            active = await c.fetchrow(
                "SELECT 1 FROM batch_jobs WHERE project_id = $1 AND kind = $2 "
                "AND status IN ('queued', 'running') LIMIT 1",
                job.project_id,
                job.kind.value,
            )
            if active:
                raise ConflictError(f"an active batch {job.kind.value} already exists")
            where, params = _batch_where(job)
            table = "deliveries" if job.kind is BatchKind.RETRY else "events"
            total = await c.fetchval(
                f"SELECT COUNT(*) FROM {table} WHERE {' AND '.join(where)}", *params
            )
            created = replace(job, total=int(total))
            await c.execute(
                "INSERT INTO batch_jobs (id, project_id, kind, filter, status, total, processed, "
                "requeued, error, due_at_us, created_at_us, updated_at_us) "
                "VALUES ($1,$2,$3,$4,$5,$6,0,0,'',$7,$7,$7)",
                created.id,
                created.project_id,
                created.kind.value,
                _json(created.filter),
                created.status.value,
                created.total,
                created.created_at_us,
            )
            await _notify(c)
            return created

        return await self._write(run)

    async def get_batch_job(self, project_id: str, job_id: str) -> BatchJob | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_JOB_COLS} FROM batch_jobs WHERE id = $1 AND project_id = $2",
                job_id,
                project_id,
            )
        )
        return None if row is None else _job(_seq(row))

    async def claim_batch_job(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> tuple[BatchJob, str] | None:
        async def run(c: Conn) -> tuple[BatchJob, str] | None:
            row = await c.fetchrow(
                f"WITH picked AS (SELECT {_JOB_COLS} FROM batch_jobs "
                "WHERE due_at_us IS NOT NULL AND due_at_us <= $1 "
                "ORDER BY due_at_us LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE batch_jobs b SET status = 'running', lease_token = $2, due_at_us = $3, "
                "updated_at_us = $1 FROM picked p WHERE b.id = p.id RETURNING p.*",
                now_us,
                lease_token,
                now_us + lease_us,
            )
            if row is None:
                return None
            return replace(_job(_seq(row)), status=BatchStatus.RUNNING), lease_token

        return await self._write(run)

    async def run_batch_chunk(
        self, job_id: str, lease_token: str, *, limit: int, now_us: int, lease_us: int
    ) -> BatchJob:
        """Requeue the next *limit* matching rows (keyset by id); progress and cursor are
        committed with them, so a crashed job resumes where it stopped."""

        async def run(c: Conn) -> BatchJob:
            row = await c.fetchrow(
                f"SELECT {_JOB_COLS}, cursor, lease_token FROM batch_jobs WHERE id = $1 FOR UPDATE",
                job_id,
            )
            if row is None or row[-1] != lease_token:
                raise LeaseLostError("the batch job's lease was lost")
            job, cursor = _job(_seq(row)), row[-2] or ""
            where, params = _batch_where(job)
            table = "deliveries" if job.kind is BatchKind.RETRY else "events"
            n = len(params)
            ids: list[str] = [
                r[0]
                for r in await c.fetch(
                    f"SELECT id FROM {table} WHERE {' AND '.join(where)} AND id > ${n + 1} "
                    f"ORDER BY id LIMIT ${n + 2}",
                    *params,
                    cursor,
                    limit,
                )
            ]
            if job.kind is BatchKind.RETRY:
                requeued = await _requeue_deliveries(c, job.project_id, ids, now_us)
            else:
                requeued = await _requeue_finished(c, job.project_id, ids, now_us)
            done = len(ids) < limit
            updated = await c.fetchrow(
                "UPDATE batch_jobs SET cursor = COALESCE($1, cursor), processed = processed + $2, "
                "requeued = requeued + $3, status = $4, due_at_us = $5, finished_at_us = $6, "
                f"lease_token = $7, updated_at_us = $8 WHERE id = $9 RETURNING {_JOB_COLS}",
                ids[-1] if ids else None,
                len(ids),
                requeued,
                "done" if done else "running",
                None if done else now_us + lease_us,
                now_us if done else None,
                None if done else lease_token,
                now_us,
                job_id,
            )
            if requeued:
                await _notify(c)
            assert updated is not None
            return _job(_seq(updated))

        return await self._write(run)

    # ------------------------------------------------------------ retention

    async def retention_policies(self) -> list[tuple[str, int]]:
        rows = await self._read(lambda c: c.fetch("SELECT id, config FROM projects"))
        out = []
        for pid, text in rows:
            hours = stored_config(text).retention_hours
            if hours > 0:
                out.append((pid, hours))
        return out

    async def purge_before(self, project_id: str, cutoff_us: int, limit: int) -> int:
        """Delete up to *limit* rows of each table older than *cutoff_us*: small
        transactions, so delivery is never locked out for long. Returns rows deleted."""

        async def run(c: Conn) -> int:
            n = 0
            for table in ("attempts", "deliveries", "events"):
                n += _count(
                    await c.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                        "WHERE project_id = $1 AND created_at_us < $2 LIMIT $3)",
                        project_id,
                        cutoff_us,
                        limit,
                    )
                )
            return n

        return await self._write(run)

    # ------------------------------------------------------------ broadcast fan-out

    async def claim_fanout(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> FanoutJob | None:
        """Lease the oldest broadcast whose fan-out is due (new, or its lease expired)."""

        async def run(c: Conn) -> FanoutJob | None:
            row = await c.fetchrow(
                "WITH picked AS (SELECT e.id FROM events e JOIN projects p "
                "ON p.id = e.project_id WHERE e.fanout_due_at_us IS NOT NULL "
                "AND e.fanout_due_at_us <= $1 ORDER BY e.fanout_due_at_us LIMIT 1 "
                "FOR UPDATE OF e SKIP LOCKED) "
                "UPDATE events e SET fanout_lease_token = $2, fanout_due_at_us = $3, "
                "status = 'Processing', updated_at_us = $1 FROM picked WHERE e.id = picked.id "
                "RETURNING e.id, e.project_id, e.event_type, e.data, e.headers, "
                "e.idempotency_key, (SELECT p.config FROM projects p WHERE p.id = e.project_id)",
                now_us,
                lease_token,
                now_us + lease_us,
            )
            if row is None:
                return None
            config = stored_config(row[6])
            return FanoutJob(
                row[0],
                row[1],
                row[2],
                orjson.loads(row[3]),
                orjson.loads(row[4]),
                row[5],
                lease_token,
                config.strategy,
                config.broadcast_rate,
            )

        return await self._write(run)

    async def write_fanout_chunk(
        self, job: FanoutJob, *, limit: int, now_us: int, lease_us: int
    ) -> ChunkResult:
        """Route the next *limit* endpoints (keyset by id) and write their deliveries, the
        cursor and the counters in one transaction: a crash resumes exactly here."""
        return await self._write(
            lambda c: _FanoutChunk(c, self._filters, job, now_us).run(limit, lease_us)
        )

    async def broadcast_progress(self, project_id: str, event_id: str) -> BroadcastProgress | None:
        return await self._read(lambda c: _broadcast_progress(c, project_id, event_id))


# ---------------------------------------------------------------- ingest


class _Ingest:
    """Routing and writing of one group-commit batch, inside its transaction.

    The reads every event needs are made once for the batch (its endpoints, their
    subscriptions, the idempotency keys already used); the events and deliveries are
    written at the end with one statement each."""

    def __init__(self, conn: Conn, filters: FilterCache) -> None:
        self.c = conn
        self.filters = filters
        self.event_rows: list[tuple[Any, ...]] = []
        self.delivery_rows: list[tuple[Any, ...]] = []
        self.seen_keys: set[tuple[str, str]] = set()
        self.used_keys: set[tuple[str, str]] = set()
        self.endpoint_cache: dict[tuple[str, str], Endpoint | None] = {}
        self.subs_cache: dict[str, list[Subscription]] = {}
        #: the endpoints of each (project, owner) fanned out to in this batch
        self.owner_cache: dict[tuple[str, str], list[Endpoint]] = {}

    async def run(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        await self._prepare(batch)
        results = []
        for ev in batch:
            # every check happens before anything of the item is written (bar the
            # subscriptions and endpoints routing creates, as in the embedded store)
            try:
                results.append(await self._one(ev))
            except (ValidationError, NotFoundError, ConflictError) as exc:
                results.append(IngestResult(ev.id, error=exc))
        await self._flush()
        return results

    async def _prepare(self, batch: Sequence[NewEvent]) -> None:
        """Read the batch's endpoints and subscriptions, then lock what is checked and
        then written (idempotency keys, catch-all subscriptions, dynamic endpoints), so
        two processes ingesting at once see each other's writes."""
        single = {
            (ev.project_id, ev.endpoint_id or "") for ev in batch if ev.kind is EventKind.SINGLE
        }
        if single:
            found = {
                r[0]: _endpoint(_seq(r))
                for r in await self.c.fetch(
                    f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = ANY($1::text[])",
                    list({eid for _, eid in single}),
                )
            }
            for project_id, endpoint_id in single:
                ep = found.get(endpoint_id)
                self.endpoint_cache[(project_id, endpoint_id)] = (
                    ep if ep is not None and ep.project_id == project_id else None
                )
        owners = {(ev.project_id, ev.owner_id or "") for ev in batch if ev.kind is EventKind.FANOUT}
        if owners:  # every owner's endpoints in one query, not one per event
            self.owner_cache = {key: [] for key in owners}
            for r in await self.c.fetch(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints JOIN unnest($1::text[], $2::text[]) "
                "AS k(kp, ko) ON project_id = k.kp AND owner_id = k.ko ORDER BY id",
                [p for p, _ in owners],
                [o for _, o in owners],
            ):
                ep = _endpoint(_seq(r))
                self.owner_cache[(ep.project_id, ep.owner_id)].append(ep)
        known = [ep.id for ep in self.endpoint_cache.values() if ep is not None]
        known += [ep.id for eps in self.owner_cache.values() for ep in eps]
        await self._subscriptions(known)
        unsubscribed = [eid for eid in known if not self.subs_cache[eid]]
        keys = [_lock_key("sub", eid) for eid in unsubscribed]
        idem = {(ev.project_id, ev.idempotency_key) for ev in batch if ev.idempotency_key}
        keys += [_lock_key("idem", p, k) for p, k in idem]
        keys += [
            _lock_key("dyn", ev.project_id, ev.url) for ev in batch if ev.kind is EventKind.DYNAMIC
        ]
        await _advisory_locks(self.c, keys)
        if unsubscribed:  # another process may have subscribed them before the lock
            for eid in unsubscribed:
                self.subs_cache.pop(eid, None)
            await self._subscriptions(unsubscribed)
        if idem:
            rows = await self.c.fetch(
                "SELECT DISTINCT e.project_id, e.idempotency_key FROM events e "
                "JOIN unnest($1::text[], $2::text[]) AS k(project_id, idempotency_key) "
                "ON e.project_id = k.project_id AND e.idempotency_key = k.idempotency_key "
                "WHERE NOT e.is_duplicate_event",
                [p for p, _ in idem],
                [k for _, k in idem],
            )
            self.used_keys = {(r[0], r[1]) for r in rows}

    async def _flush(self) -> None:
        if self.event_rows:
            await self.c.execute(
                "INSERT INTO events (id, project_id, kind, event_type, data, headers, "
                "idempotency_key, is_duplicate_event, endpoints, status, failure_reason, "
                "api_key_id, owner_id, fanout_cursor, fanout_due_at_us, acknowledged_at_us, "
                "created_at_us, updated_at_us) SELECT * FROM unnest($1::text[], $2::text[], "
                "$3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[], $8::boolean[], "
                "$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], "
                "$15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[])",
                *_columns(self.event_rows, 18),
            )
            await _notify(self.c)
        if self.delivery_rows:
            await self.c.execute(_INSERT_DELIVERIES, *_columns(self.delivery_rows, 16))

    def _is_duplicate(self, ev: NewEvent) -> bool:
        if not ev.idempotency_key:
            return False
        key = (ev.project_id, ev.idempotency_key)
        if key in self.seen_keys:
            return True
        self.seen_keys.add(key)
        return key in self.used_keys

    async def _one(self, ev: NewEvent) -> IngestResult:
        targets = await self._targets(ev)  # validates references before anything is written
        if self._is_duplicate(ev):
            self._add_event(ev, [], duplicate=True)
            return IngestResult(ev.id, is_duplicate=True)
        endpoint_ids = [ep.id for ep, _ in targets]
        self._add_event(ev, endpoint_ids, duplicate=False)
        for endpoint, sub in targets:
            self._add_delivery(ev, endpoint, sub)
        return IngestResult(ev.id, deliveries=len(targets))

    async def _targets(self, ev: NewEvent) -> list[tuple[Endpoint, Subscription]]:
        if ev.kind is EventKind.SINGLE:
            endpoint = await self._endpoint(ev.project_id, ev.endpoint_id or "")
            if endpoint is None:
                raise ValidationError("endpoint not found in this project")
            return await self._route([endpoint], ev, auto_subscribe=True)
        if ev.kind is EventKind.FANOUT:
            endpoints = self.owner_cache.get((ev.project_id, ev.owner_id or ""), [])
            return await self._route(endpoints, ev, auto_subscribe=False)
        if ev.kind is EventKind.DYNAMIC:
            endpoint = await self._dynamic_endpoint(ev)
            return await self._route([endpoint], ev, auto_subscribe=False)
        return []  # broadcast: routed later, chunk by chunk, by the fan-out

    async def _route(
        self, endpoints: list[Endpoint], ev: NewEvent, *, auto_subscribe: bool
    ) -> list[tuple[Endpoint, Subscription]]:
        if not endpoints:
            return []
        by_endpoint = await self._subscriptions([e.id for e in endpoints])
        out = []
        for endpoint in endpoints:
            candidates = by_endpoint.get(endpoint.id)
            if not candidates and auto_subscribe:
                candidates = [await self._catch_all(endpoint)]
                self.subs_cache[endpoint.id] = candidates
            if not candidates:
                continue
            match = first_match(candidates, ev.event_type, ev.parsed, ev.headers, self.filters)
            if match is not None:
                out.append((endpoint, match))
        return out

    async def _endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        key = (project_id, endpoint_id)
        if key not in self.endpoint_cache:
            self.endpoint_cache[key] = await _endpoint_by_id(self.c, project_id, endpoint_id)
        return self.endpoint_cache[key]

    async def _subscriptions(self, endpoint_ids: list[str]) -> dict[str, list[Subscription]]:
        missing = list({e for e in endpoint_ids if e not in self.subs_cache})
        if missing:
            rows = await self.c.fetch(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE endpoint_id = ANY($1::text[]) "
                "ORDER BY id",
                missing,
            )
            found = group_by_endpoint(_subscription(_seq(r)) for r in rows)
            for endpoint_id in missing:
                self.subs_cache[endpoint_id] = found.get(endpoint_id, [])
        return {e: self.subs_cache[e] for e in endpoint_ids}

    async def _catch_all(self, endpoint: Endpoint) -> Subscription:
        now = endpoint.updated_at_us
        sub = Subscription(
            new_id(),
            endpoint.project_id,
            endpoint.id,
            f"{endpoint.name[:187]}-subscription",
            "api",
            FilterConfig(),
            None,
            None,
            None,
            DeliveryMode.AT_LEAST_ONCE,
            "",
            now,
            now,
        )
        await _insert_subscription(self.c, sub)
        return sub

    async def _dynamic_endpoint(self, ev: NewEvent) -> Endpoint:
        row = await self.c.fetchrow(
            f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE project_id = $1 AND url = $2 "
            "ORDER BY id LIMIT 1",
            ev.project_id,
            ev.url,
        )
        now = ev.acknowledged_at_us
        if row is not None:
            endpoint = _endpoint(_seq(row))
        else:
            endpoint = Endpoint(
                new_id(),
                ev.project_id,
                "",
                ev.url[:200],  # the name: the URL, cut to the column's size
                ev.url,
                "",
                EndpointStatus.ACTIVE,
                (Secret(new_id(), ev.secret, now),),
                True,
                10,
                0,
                0,
                "application/json",
                None,
                "",
                "",
                "",
                now,
                now,
            )
            await self.c.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLS}) VALUES ({_ENDPOINT_VALUES})",
                *_endpoint_row(endpoint),
            )
        has_sub = await self.c.fetchrow(
            "SELECT 1 FROM subscriptions WHERE endpoint_id = $1 LIMIT 1", endpoint.id
        )
        if not has_sub:
            sub = Subscription(
                new_id(),
                ev.project_id,
                endpoint.id,
                f"{endpoint.name[:187]}-subscription",
                "api",
                FilterConfig(event_types=ev.event_types),
                None,
                None,
                None,
                DeliveryMode.AT_LEAST_ONCE,
                "",
                now,
                now,
            )
            await _insert_subscription(self.c, sub)
        self.subs_cache.pop(endpoint.id, None)
        return endpoint

    def _add_event(self, ev: NewEvent, endpoint_ids: list[str], *, duplicate: bool) -> None:
        row = event_row(ev, endpoint_ids, duplicate=duplicate)
        self.event_rows.append(row)

    def _add_delivery(self, ev: NewEvent, endpoint: Endpoint, sub: Subscription) -> None:
        self.delivery_rows.append(delivery_row(ev, endpoint, sub))


# ---------------------------------------------------------------- broadcast fan-out


class _FanoutChunk:
    """One chunk of a broadcast, inside its transaction."""

    def __init__(self, c: Conn, filters: FilterCache, job: FanoutJob, now_us: int) -> None:
        self.c, self.filters, self.job, self.now = c, filters, job, now_us

    async def run(self, limit: int, lease_us: int) -> ChunkResult:
        job = self.job
        # the row lock fences the chunk: a worker that reclaimed the lease waits for it
        row = await self.c.fetchrow(
            "SELECT fanout_cursor, fanout_lease_token, fanout_matched FROM events "
            "WHERE id = $1 FOR UPDATE",
            job.event_id,
        )
        if row is None or row[1] != job.lease_token:
            raise LeaseLostError("the broadcast's fan-out lease was lost")
        endpoints = [
            (r[0], r[1])
            for r in await self.c.fetch(
                "SELECT id, status FROM endpoints WHERE project_id = $1 AND id > $2 "
                "ORDER BY id LIMIT $3",
                job.project_id,
                row[0] or "",
                limit,
            )
        ]
        matched, skipped = await self._route(endpoints)
        done = len(endpoints) < limit
        await self._write_deliveries(matched)
        await self._advance(endpoints, len(matched), skipped, done, row[2], lease_us)
        if matched:
            await _notify(self.c)
        return ChunkResult(len(matched), skipped, len(endpoints), done)

    async def _route(
        self, endpoints: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, Subscription]], int]:
        if not endpoints:
            return [], 0
        job = self.job
        subs = [
            _subscription(_seq(r))
            for r in await self.c.fetch(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE project_id = $1 "
                "AND endpoint_id >= $2 AND endpoint_id <= $3 ORDER BY endpoint_id, id",
                job.project_id,
                endpoints[0][0],
                endpoints[-1][0],
            )
        ]
        by_endpoint = group_by_endpoint(subs)
        matched: list[tuple[str, Subscription]] = []
        skipped = 0
        for endpoint_id, status in endpoints:
            candidates = by_endpoint.get(endpoint_id)
            if not candidates:
                continue
            sub = first_match(candidates, job.event_type, job.parsed, job.headers, self.filters)
            if sub is None:
                continue
            if status == EndpointStatus.ACTIVE.value:
                matched.append((endpoint_id, sub))
            else:
                skipped += 1
        return matched, skipped

    async def _release_times(self, count: int) -> list[int]:
        """Due times that release this project's broadcast deliveries at its rate."""
        job = self.job
        if job.broadcast_rate <= 0 or count == 0:
            return [self.now] * count
        clock = await self.c.fetchval(
            "SELECT broadcast_release_at_us FROM projects WHERE id = $1 FOR UPDATE",
            job.project_id,
        )
        start = max(int(clock or 0), self.now)
        step = 1_000_000 / job.broadcast_rate
        await self.c.execute(
            "UPDATE projects SET broadcast_release_at_us = $1 WHERE id = $2",
            int(start + count * step),
            job.project_id,
        )
        return [int(start + i * step) for i in range(count)]

    async def _write_deliveries(self, matched: list[tuple[str, Subscription]]) -> None:
        job, now = self.job, self.now
        rows = []
        times = await self._release_times(len(matched))
        for (endpoint_id, sub), due in zip(matched, times, strict=True):
            s = strategy_for(sub, job.strategy)
            rows.append(
                (
                    new_id(),
                    job.project_id,
                    job.event_id,
                    endpoint_id,
                    sub.id,
                    job.event_type,
                    "Scheduled",
                    sub.delivery_mode.value,
                    job.idempotency_key,
                    s.retry_count,
                    s.type.value,
                    s.duration,
                    s.max_retry_seconds,
                    due,
                    now,
                    now,
                )
            )
        if rows:
            await self.c.execute(
                _INSERT_DELIVERIES + " ON CONFLICT DO NOTHING", *_columns(rows, 16)
            )

    async def _advance(
        self,
        endpoints: list[tuple[str, str]],
        matched: int,
        skipped: int,
        done: bool,
        before: int,
        lease_us: int,
    ) -> None:
        job, now = self.job, self.now
        cursor = endpoints[-1][0] if endpoints else None
        if not done:
            await self.c.execute(
                "UPDATE events SET fanout_cursor = $1, fanout_matched = fanout_matched + $2, "
                "fanout_skipped = fanout_skipped + $3, fanout_due_at_us = $4, "
                "updated_at_us = $5 WHERE id = $6",
                cursor,
                matched,
                skipped,
                now + lease_us,
                now,
                job.event_id,
            )
            return
        total = before + matched
        status = EventStatus.SUCCESS if total else EventStatus.FAILURE
        reason = "" if total else "no subscription matched this event"
        await self.c.execute(
            "UPDATE events SET fanout_cursor = COALESCE($1, fanout_cursor), "
            "fanout_matched = fanout_matched + $2, fanout_skipped = fanout_skipped + $3, "
            "fanout_due_at_us = NULL, fanout_lease_token = NULL, fanout_done_at_us = $4, "
            "status = $5, failure_reason = $6, updated_at_us = $4 WHERE id = $7",
            cursor,
            matched,
            skipped,
            now,
            status.value,
            reason,
            job.event_id,
        )


async def _percentile(c: Conn, event_id: str, ack: int, count: int, q: float) -> float | None:
    if count == 0:
        return None
    offset = min(count - 1, int(q * count))
    value = await c.fetchval(
        "SELECT updated_at_us FROM deliveries WHERE event_id = $1 AND status = 'Success' "
        "ORDER BY updated_at_us LIMIT 1 OFFSET $2",
        event_id,
        offset,
    )
    return None if value is None else (int(value) - ack) / 1000


async def _broadcast_progress(c: Conn, project_id: str, event_id: str) -> BroadcastProgress | None:
    row = await c.fetchrow(
        "SELECT fanout_matched, fanout_skipped, fanout_due_at_us, acknowledged_at_us, kind "
        "FROM events WHERE id = $1 AND project_id = $2",
        event_id,
        project_id,
    )
    if row is None:
        return None
    statuses: dict[str, int] = {
        r[0]: int(r[1])
        for r in await c.fetch(
            "SELECT status, COUNT(*) FROM deliveries WHERE event_id = $1 GROUP BY status",
            event_id,
        )
    }
    span = await c.fetchrow(
        "SELECT MIN(updated_at_us), MAX(updated_at_us) FROM deliveries "
        "WHERE event_id = $1 AND status = 'Success'",
        event_id,
    )
    first, last = (span[0], span[1]) if span is not None else (None, None)
    ok = statuses.get("Success", 0)
    latency = {
        name: await _percentile(c, event_id, row[3], ok, q)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }
    return BroadcastProgress(row[0], row[1], row[2] is None, statuses, first, last, latency)
