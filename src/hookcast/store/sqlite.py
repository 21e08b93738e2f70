"""The embedded store: one SQLite file in WAL mode.

All SQL for SQLite lives here. Every store call runs as one plain function on a database
thread with the stdlib driver, so a whole transaction (a claim, a group commit of a batch
of events) costs one hop between the event loop and the thread. Writes go through one
writer thread and connection; reads have their own thread and connection, which WAL lets
run beside the writer.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

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
    KeyRole,
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
from hookcast.store.rows import complete_isolated, delivery_row, event_row, release_step_us
from hookcast.store.urls import sqlite_path

T = TypeVar("T")


def connect(path: str, *, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


class _DbThread:
    """One thread owning one connection; callables run there in submission order."""

    def __init__(self, path: str, name: str, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: sqlite3.Connection | None = None
        #: run on the event loop's own thread: no hop and no GIL hand-offs, at the price
        #: of blocking the loop for the (short, batched) transaction
        self.inline = False

    def _open(self) -> None:
        self.conn = connect(self._path, synchronous=self._synchronous)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._open)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.inline:
            return self._call(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

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

    async def stop(self) -> None:
        def close() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- row mapping

_PROJECT_COLS = "id, name, type, config, created_at_us, updated_at_us"
_KEY_COLS = (
    "id, mask, name, role, project_id, can_broadcast, expires_at_us, revoked_at_us, "
    "created_at_us, key_hash"
)
_ENDPOINT_COLS = (
    "id, project_id, owner_id, name, url, description, status, secrets, advanced_signatures, "
    "http_timeout, rate_limit, rate_limit_duration, content_type, authentication, "
    "support_email, slack_webhook_url, teams_webhook_url, created_at_us, updated_at_us, "
    "max_in_flight, breaker, disabled_reason, probe_at_us, probe_attempts"
)
_SUB_COLS = (
    "id, project_id, endpoint_id, name, type, filter_config, alert_config, retry_config, "
    "rate_limit_config, delivery_mode, function, created_at_us, updated_at_us, status"
)
_EVENT_COLS = (
    "id, project_id, kind, event_type, data, headers, idempotency_key, is_duplicate_event, "
    "endpoints, status, api_key_id, acknowledged_at_us, created_at_us, updated_at_us"
)
_DELIVERY_COLS = (
    "id, project_id, event_id, endpoint_id, subscription_id, event_type, status, "
    "delivery_mode, idempotency_key, attempts, retry_limit, strategy, interval_seconds, "
    "max_retry_seconds, due_at_us, latency_us, description, created_at_us, updated_at_us"
)
_ATTEMPT_COLS = (
    "id, delivery_id, project_id, endpoint_id, url, method, ip_address, request_headers, "
    "response_headers, http_status, response_data, error, success, requested_at_us, "
    "responded_at_us, created_at_us"
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _load(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _project(r: Sequence[Any]) -> Project:
    return Project(r[0], r[1], r[2], stored_config(r[3]), r[4], r[5])


def _key(r: Sequence[Any]) -> ApiKey:
    return ApiKey(r[0], r[1], r[2], KeyRole(r[3]), r[4], bool(r[5]), r[6], r[7], r[8])


def _secrets_to_json(secrets: Iterable[Secret]) -> str:
    return _json(
        [
            {
                "id": s.id,
                "value": s.value,
                "created_at_us": s.created_at_us,
                "expires_at_us": s.expires_at_us,
            }
            for s in secrets
        ]
    )


def _secrets(text: str) -> tuple[Secret, ...]:
    return tuple(
        Secret(d["id"], d["value"], d["created_at_us"], d.get("expires_at_us"))
        for d in orjson.loads(text)
    )


def _endpoint(r: Sequence[Any]) -> Endpoint:
    return Endpoint(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        EndpointStatus(r[6]),
        _secrets(r[7]),
        bool(r[8]),
        r[9],
        r[10],
        r[11],
        r[12],
        _load(r[13]),
        r[14],
        r[15],
        r[16],
        r[17],
        r[18],
        r[19],
        _load(r[20]),
        r[21],
        r[22],
        r[23],
    )


def _endpoint_row(e: Endpoint) -> tuple[Any, ...]:
    return (
        e.id,
        e.project_id,
        e.owner_id,
        e.name,
        e.url,
        e.description,
        e.status.value,
        _secrets_to_json(e.secrets),
        e.advanced_signatures,
        e.http_timeout,
        e.rate_limit,
        e.rate_limit_duration,
        e.content_type,
        None if e.authentication is None else _json(e.authentication),
        e.support_email,
        e.slack_webhook_url,
        e.teams_webhook_url,
        e.created_at_us,
        e.updated_at_us,
        e.max_in_flight,
        None if e.breaker is None else _json(e.breaker),
        e.disabled_reason,
        e.probe_at_us,
        e.probe_attempts,
    )


def _subscription(r: Sequence[Any]) -> Subscription:
    fc = orjson.loads(r[5])
    return Subscription(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        FilterConfig(tuple(fc.get("event_types") or ("*",)), fc.get("filter") or {}),
        _load(r[6]),
        _load(r[7]),
        _load(r[8]),
        DeliveryMode(r[9]),
        r[10],
        r[11],
        r[12],
        r[13],
    )


def _subscription_row(s: Subscription) -> tuple[Any, ...]:
    fc = {"event_types": list(s.filter_config.event_types), "filter": s.filter_config.filter}
    return (
        s.id,
        s.project_id,
        s.endpoint_id,
        s.name,
        s.type,
        _json(fc),
        None if s.alert_config is None else _json(s.alert_config),
        None if s.retry_config is None else _json(s.retry_config),
        None if s.rate_limit_config is None else _json(s.rate_limit_config),
        s.delivery_mode.value,
        s.function,
        s.created_at_us,
        s.updated_at_us,
        s.status,
    )


def _event(r: Sequence[Any]) -> Event:
    return Event(
        r[0],
        r[1],
        EventKind(r[2]),
        r[3],
        bytes(r[4]),
        orjson.loads(r[5]),
        r[6],
        bool(r[7]),
        tuple(orjson.loads(r[8])),
        EventStatus(r[9]),
        r[10],
        r[11],
        r[12],
        r[13],
    )


def _delivery(r: Sequence[Any]) -> Delivery:
    return Delivery(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        DeliveryStatus(r[6]),
        DeliveryMode(r[7]),
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
        r[18],
    )


def _attempt(r: Sequence[Any]) -> Attempt:
    return Attempt(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        orjson.loads(r[7]),
        orjson.loads(r[8]),
        r[9],
        r[10],
        r[11],
        bool(r[12]),
        r[13],
        r[14],
        r[15],
    )


def _attempt_row(attempt: Attempt) -> tuple[Any, ...]:
    a = storable.attempt(attempt)
    return (
        a.id,
        a.delivery_id,
        a.project_id,
        a.endpoint_id,
        a.url,
        a.method,
        a.ip_address,
        _json(a.request_headers),
        _json(a.response_headers),
        a.http_status,
        a.response_data,
        a.error,
        a.success,
        a.requested_at_us,
        a.responded_at_us,
        a.created_at_us,
    )


# ---------------------------------------------------------------- pagination


def _paged(
    conn: sqlite3.Connection,
    table: str,
    cols: str,
    where: list[str],
    params: list[Any],
    page: PageRequest,
    mapper: Callable[[Sequence[Any]], T],
) -> Page[T]:
    """Keyset pagination on ``id`` in Convoy's shape (fetch one extra row)."""
    base = " AND ".join(where) if where else "1=1"
    desc = page.descending
    if page.direction is Direction.PREV and page.prev_cursor:
        # walk backwards from the cursor, then present in the page's usual order
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
        sql += f" AND id {op} ?"
        args.append(cursor)
    sql += f" ORDER BY id {order} LIMIT ?"
    args.append(page.per_page + 1)
    rows = conn.execute(sql, args).fetchall()
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
    has_prev = (
        extra if backwards else _exists(conn, table, base, params, f"id {before_op} ?", first_id)
    )
    has_next = (
        _exists(conn, table, base, params, f"id {after_op} ?", last_id) if backwards else extra
    )
    next_cursor = ""
    if has_next:
        nxt = conn.execute(
            f"SELECT id FROM {table} WHERE {base} AND id {after_op} ? "
            f"ORDER BY id {'DESC' if desc else 'ASC'} LIMIT 1",
            [*params, last_id],
        ).fetchone()
        next_cursor = nxt[0] if nxt else ""
    return Page(items, page.per_page, has_next, has_prev, next_cursor, first_id)


def _exists(
    conn: sqlite3.Connection, table: str, base: str, params: list[Any], cond: str, value: str
) -> bool:
    row = conn.execute(
        f"SELECT 1 FROM {table} WHERE {base} AND {cond} LIMIT 1",
        [*params, value],
    ).fetchone()
    return row is not None


def _in(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})"


# ---------------------------------------------------------------- the store


class SQLiteStore:
    """The embedded store. ``open()`` before use; ``close()`` after."""

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.path = sqlite_path(url)
        self._writer = _DbThread(self.path, "hookcast-db-write", synchronous)
        self.inline_writes = False  # set before open(); see _DbThread.inline
        self._reader = _DbThread(self.path, "hookcast-db-read", synchronous)
        self._filters = FilterCache()
        self._configs: dict[tuple[str, int], ProjectConfig] = {}
        self._workers_lock: int | None = None

    async def open(self) -> None:
        parent = Path(self.path).parent
        if not parent.exists():
            raise StoreError(f"the directory {parent} for the database does not exist")
        await self._writer.start()
        await self._reader.start()
        self._writer.inline = self.inline_writes

    async def close(self) -> None:
        await self._writer.stop()
        await self._reader.stop()
        if self._workers_lock is not None:
            os.close(self._workers_lock)  # releases the lock
            self._workers_lock = None

    async def join_workers(self, now_us: int) -> int:
        """Join the worker processes of this file (a shared lock next to it, released by
        the OS when the process ends, however it ends). When no other worker process is
        alive, every lease in the file belongs to a process that died: they are
        reclaimed at once (deliveries, broadcast fan-outs, batch jobs) instead of after
        their lease time. Returns how many were reclaimed."""
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
            return await self._write(lambda c: _reclaim_all(c, now_us))
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)  # other workers may join from now on

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            conn.execute("COMMIT")
            return result

        return await self._writer.run(tx)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._reader.run(fn)

    async def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the file."""
        row = await self._reader.run(lambda c: c.execute("PRAGMA data_version").fetchone())
        return int(row[0])

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
            lambda c: c.execute(f"INSERT INTO projects ({_PROJECT_COLS}) VALUES (?,?,?,?,?,?)", row)
        )

    async def list_projects(self) -> list[Project]:
        rows = await self._read(
            lambda c: c.execute(f"SELECT {_PROJECT_COLS} FROM projects ORDER BY id").fetchall()
        )
        return [_project(r) for r in rows]

    async def get_project(self, project_id: str) -> Project | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_PROJECT_COLS} FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
        )
        return None if row is None else _project(row)

    async def update_project(self, project: Project) -> None:
        args = (project.name, project.config.model_dump_json(), project.updated_at_us, project.id)
        await self._write(
            lambda c: c.execute(
                "UPDATE projects SET name = ?, config = ?, updated_at_us = ? WHERE id = ?", args
            )
        )

    async def delete_project(self, project_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM projects WHERE id = ?", (project_id,))
            if cur.rowcount == 0:
                return False
            for table in (
                "api_keys",
                "endpoints",
                "subscriptions",
                "events",
                "deliveries",
                "attempts",
            ):
                c.execute(f"DELETE FROM {table} WHERE project_id = ?", (project_id,))
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
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row
            )
        )

    async def find_api_key(self, mask: str) -> tuple[ApiKey, str] | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE mask = ?", (mask,)
            ).fetchone()
        )
        return None if row is None else (_key(row), row[9])

    async def list_api_keys(self, project_id: str | None) -> list[ApiKey]:
        """The keys of a project, oldest first; every key when *project_id* is None."""
        where, args = ("WHERE project_id = ?", (project_id,)) if project_id else ("", ())
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_KEY_COLS} FROM api_keys {where} ORDER BY id", args
            ).fetchall()
        )
        return [_key(r) for r in rows]

    async def revoke_api_key(
        self, key_id: str, project_id: str | None, now_us: int
    ) -> ApiKey | None:
        """Revoke a key (of *project_id*, or of any project when None); revoking twice
        keeps the first time. None when there is no such key."""

        def run(c: sqlite3.Connection) -> ApiKey | None:
            where, args = "id = ?", [key_id]
            if project_id:
                where, args = "id = ? AND project_id = ?", [key_id, project_id]
            c.execute(
                f"UPDATE api_keys SET revoked_at_us = COALESCE(revoked_at_us, ?) WHERE {where}",
                [now_us, *args],
            )
            row = c.execute(f"SELECT {_KEY_COLS} FROM api_keys WHERE {where}", args).fetchone()
            return None if row is None else _key(row)

        return await self._write(run)

    # ------------------------------------------------------------ endpoints

    async def create_endpoint(self, endpoint: Endpoint) -> None:
        row = _endpoint_row(endpoint)
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLS}) VALUES ({','.join('?' * len(row))})", row
            )
        )

    async def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = ? AND project_id = ?",
                (endpoint_id, project_id),
            ).fetchone()
        )
        return None if row is None else _endpoint(row)

    async def list_endpoints(
        self, project_id: str, owner_id: str | None, q: str | None, page: PageRequest
    ) -> Page[Endpoint]:
        where, params = ["project_id = ?"], [project_id]
        if owner_id:
            where.append("owner_id = ?")
            params.append(owner_id)
        if q:
            where.append("name LIKE ? ESCAPE '\\'")
            params.append(
                "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
        return await self._read(
            lambda c: _paged(c, "endpoints", _ENDPOINT_COLS, where, params, page, _endpoint)
        )

    async def update_endpoint(self, endpoint: Endpoint) -> None:
        row = _endpoint_row(endpoint)
        sets = ", ".join(f"{col.strip()} = ?" for col in _ENDPOINT_COLS.split(",")[1:])

        def run(c: sqlite3.Connection) -> None:
            cur = c.execute(
                f"UPDATE endpoints SET {sets} WHERE id = ? AND project_id = ?",
                (*row[1:], endpoint.id, endpoint.project_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError("endpoint not found")

        await self._write(run)

    async def delete_endpoint(self, project_id: str, endpoint_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "DELETE FROM endpoints WHERE id = ? AND project_id = ?", (endpoint_id, project_id)
            )
            if cur.rowcount == 0:
                return False
            c.execute("DELETE FROM subscriptions WHERE endpoint_id = ?", (endpoint_id,))
            return True

        return await self._write(run)

    # ------------------------------------------------------------ subscriptions

    async def create_subscription(self, sub: Subscription, *, allow_multiple: bool) -> None:
        row = _subscription_row(sub)

        def run(c: sqlite3.Connection) -> None:
            if _endpoint_by_id(c, sub.project_id, sub.endpoint_id) is None:
                raise ValidationError("endpoint not found in this project")
            if (
                not allow_multiple
                and c.execute(
                    "SELECT 1 FROM subscriptions WHERE endpoint_id = ? LIMIT 1", (sub.endpoint_id,)
                ).fetchone()
            ):
                raise ConflictError("a subscription for this endpoint already exists")
            c.execute(
                f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES ({','.join('?' * len(row))})", row
            )

        await self._write(run)

    async def get_subscription(self, project_id: str, sub_id: str) -> Subscription | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE id = ? AND project_id = ?",
                (sub_id, project_id),
            ).fetchone()
        )
        return None if row is None else _subscription(row)

    async def list_subscriptions(
        self, project_id: str, endpoint_ids: Sequence[str], name: str | None, page: PageRequest
    ) -> Page[Subscription]:
        where, params = ["project_id = ?"], [project_id]
        if endpoint_ids:
            where.append(_in("endpoint_id", endpoint_ids))
            params.extend(endpoint_ids)
        if name:
            where.append("name = ?")
            params.append(name)
        return await self._read(
            lambda c: _paged(c, "subscriptions", _SUB_COLS, where, params, page, _subscription)
        )

    async def update_subscription(self, sub: Subscription) -> None:
        row = _subscription_row(sub)
        sets = ", ".join(f"{col.strip()} = ?" for col in _SUB_COLS.split(",")[1:])

        def run(c: sqlite3.Connection) -> None:
            if _endpoint_by_id(c, sub.project_id, sub.endpoint_id) is None:
                raise ValidationError("endpoint not found in this project")
            cur = c.execute(
                f"UPDATE subscriptions SET {sets} WHERE id = ? AND project_id = ?",
                (*row[1:], sub.id, sub.project_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError("subscription not found")

        await self._write(run)

    async def delete_subscription(self, project_id: str, sub_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "DELETE FROM subscriptions WHERE id = ? AND project_id = ?", (sub_id, project_id)
            )
            return cur.rowcount > 0

        return await self._write(run)

    # ------------------------------------------------------------ ingest (group commit)

    async def ingest(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        """Route and store a batch of events in one transaction."""
        return await self._write(lambda c: _Ingest(c, self._filters).run(batch))

    # ------------------------------------------------------------ events

    async def get_event(self, project_id: str, event_id: str) -> Event | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE id = ? AND project_id = ?",
                (event_id, project_id),
            ).fetchone()
        )
        return None if row is None else _event(row)

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
            lambda c: c.execute(
                f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE id = ? AND project_id = ?",
                (delivery_id, project_id),
            ).fetchone()
        )
        return None if row is None else _delivery(row)

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

        def run(c: sqlite3.Connection) -> Delivery | None:
            row = c.execute(
                "UPDATE deliveries SET status = 'Scheduled', due_at_us = ?, attempts = 0, "
                "lease_token = NULL, description = '', updated_at_us = ? "
                f"WHERE id = ? AND project_id = ? AND {_in('status', expected)} "
                f"RETURNING {_DELIVERY_COLS}",
                (now_us, now_us, delivery_id, project_id, *[s.value for s in expected]),
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._write(run)

    async def list_attempts(self, project_id: str, delivery_id: str) -> list[Attempt]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_ATTEMPT_COLS} FROM attempts WHERE delivery_id = ? AND project_id = ? "
                "ORDER BY id",
                (delivery_id, project_id),
            ).fetchall()
        )
        return [_attempt(r) for r in rows]

    async def get_attempt(
        self, project_id: str, delivery_id: str, attempt_id: str
    ) -> Attempt | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_ATTEMPT_COLS} FROM attempts WHERE id = ? AND delivery_id = ? "
                "AND project_id = ?",
                (attempt_id, delivery_id, project_id),
            ).fetchone()
        )
        return None if row is None else _attempt(row)

    # ------------------------------------------------------------ the queue

    async def claim_due(
        self, *, now_us: int, limit: int, lease_us: int, lease_token: str
    ) -> list[ClaimedDelivery]:
        """Lease up to *limit* due deliveries (expired leases included) in one transaction."""
        return await self._write(lambda c: self._claim(c, now_us, limit, lease_us, lease_token))

    def _claim(
        self, c: sqlite3.Connection, now_us: int, limit: int, lease_us: int, token: str
    ) -> list[ClaimedDelivery]:
        rows = c.execute(
            f"SELECT {_DELIVERY_COLS} FROM deliveries "
            "WHERE status IN ('Scheduled', 'Retry', 'Processing') AND due_at_us <= ? "
            "ORDER BY due_at_us LIMIT ?",
            (now_us, limit),
        ).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        # the lease lasts the endpoint's own timeout plus a margin
        c.execute(
            "UPDATE deliveries SET status = 'Processing', lease_token = ?, due_at_us = ? + "
            "COALESCE((SELECT e.http_timeout FROM endpoints e WHERE e.id = deliveries.endpoint_id)"
            f", 30) * 1000000, attempts = attempts + 1, updated_at_us = ? WHERE {_in('id', ids)}",
            (token, now_us + lease_us, now_us, *ids),
        )
        event_ids = list({r[2] for r in rows})
        events = {
            r[0]: (bytes(r[1]), orjson.loads(r[2]))
            for r in c.execute(
                f"SELECT id, data, headers FROM events WHERE {_in('id', event_ids)}", event_ids
            )
        }
        endpoint_ids = list({r[3] for r in rows})
        endpoints = {
            r[0]: _endpoint(r)
            for r in c.execute(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE {_in('id', endpoint_ids)}",
                endpoint_ids,
            )
        }
        configs = self._project_configs(c, {r[1] for r in rows})
        claimed = []
        for r in rows:
            d = _delivery(r)
            reclaimed = d.status is DeliveryStatus.PROCESSING
            previous = DeliveryStatus.RETRY if reclaimed else d.status
            endpoint = endpoints.get(d.endpoint_id)
            timeout_us = (endpoint.http_timeout if endpoint else 30) * 1_000_000
            d = _with_claim(d, now_us + lease_us + timeout_us)
            data, headers = events.get(d.event_id, (b"null", {}))
            claimed.append(
                ClaimedDelivery(
                    d,
                    token,
                    reclaimed,
                    previous,
                    data,
                    headers,
                    endpoint,
                    configs.get(d.project_id),
                )
            )
        return claimed

    def _project_configs(
        self, c: sqlite3.Connection, project_ids: set[str]
    ) -> dict[str, ProjectConfig]:
        ids = list(project_ids)
        out: dict[str, ProjectConfig] = {}
        for pid, updated, text in c.execute(
            f"SELECT id, updated_at_us, config FROM projects WHERE {_in('id', ids)}", ids
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

        def run(c: sqlite3.Connection, batch: Sequence[Completion]) -> int:
            # disable first: a retry of an endpoint disabled now, or before, is held
            for comp in batch:
                if comp.attempt is None:
                    continue
                if comp.breaker is not None:
                    c.execute(
                        "UPDATE endpoints SET breaker = ? WHERE id = ?",
                        (_json(comp.breaker), comp.attempt.endpoint_id),
                    )
                if comp.disable_endpoint:
                    _disable(
                        c, comp.attempt.endpoint_id, comp.disable_endpoint, comp.probe_at_us, now_us
                    )
            cur = c.executemany(
                "UPDATE deliveries SET status = ?1, due_at_us = CASE WHEN ?1 = 'Retry' AND "
                "EXISTS (SELECT 1 FROM endpoints e WHERE e.id = deliveries.endpoint_id AND "
                f"e.status = 'inactive') THEN {HELD_US} ELSE ?2 END, latency_us = "
                "COALESCE(?3, latency_us), description = ?4, lease_token = NULL, "
                "updated_at_us = ?5 WHERE id = ?6 AND lease_token = ?7 AND status = 'Processing'",
                [
                    (
                        comp.status.value,
                        comp.due_at_us,
                        comp.latency_us,
                        storable.text(comp.description, 2000),
                        now_us,
                        comp.delivery_id,
                        comp.lease_token,
                    )
                    for comp in batch
                ],
            )
            updated = cur.rowcount
            attempts = [_attempt_row(comp.attempt) for comp in batch if comp.attempt]
            if attempts:
                c.executemany(
                    f"INSERT INTO attempts ({_ATTEMPT_COLS}) VALUES ({','.join('?' * 16)})",
                    attempts,
                )
            return updated

        return await complete_isolated(
            lambda batch: self._write(lambda c: run(c, batch)), completions
        )

    async def release(self, leases: Sequence[tuple[str, str]], now_us: int) -> int:
        """Give back leases without an attempt (shutdown): due now, attempt not counted."""

        def run(c: sqlite3.Connection) -> int:
            n = 0
            for delivery_id, token in leases:
                n += c.execute(
                    "UPDATE deliveries SET status = 'Scheduled', due_at_us = ?, "
                    "lease_token = NULL, attempts = MAX(attempts - 1, 0), updated_at_us = ? "
                    "WHERE id = ? AND lease_token = ? AND status = 'Processing'",
                    (now_us, now_us, delivery_id, token),
                ).rowcount
            return n

        return await self._write(run)

    async def defer(self, deferrals: Sequence[Deferral], now_us: int) -> int:
        """Give leases back unspent: the attempt counted at the claim is undone."""

        def run(c: sqlite3.Connection) -> int:
            n = 0
            for d in deferrals:
                n += c.execute(
                    "UPDATE deliveries SET status = ?, due_at_us = ?, lease_token = NULL, "
                    "attempts = MAX(attempts - 1, 0), description = ?, updated_at_us = ? "
                    "WHERE id = ? AND lease_token = ? AND status = 'Processing'",
                    (
                        d.status.value,
                        d.due_at_us,
                        d.description,
                        now_us,
                        d.delivery_id,
                        d.lease_token,
                    ),
                ).rowcount
            return n

        return await self._write(run)

    async def disable_endpoint(
        self, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
    ) -> None:
        await self._write(lambda c: _disable(c, endpoint_id, reason, probe_at_us, now_us))

    async def enable_endpoint(self, endpoint_id: str, now_us: int, release_rate: float) -> int:
        """Activate, reset health, and release the deliveries held while it was disabled,
        spread at *release_rate* per second (0 = all at once). Returns how many."""

        def run(c: sqlite3.Connection) -> int:
            c.execute(
                "UPDATE endpoints SET status = 'active', disabled_reason = '', breaker = NULL, "
                "probe_at_us = NULL, probe_attempts = 0, updated_at_us = ? WHERE id = ?",
                (now_us, endpoint_id),
            )
            held = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM deliveries WHERE endpoint_id = ? AND due_at_us = ? "
                    "AND status IN ('Scheduled', 'Retry') ORDER BY id",
                    (endpoint_id, HELD_US),
                )
            ]
            step = release_step_us(release_rate)
            c.executemany(
                "UPDATE deliveries SET due_at_us = ?, updated_at_us = ? WHERE id = ?",
                [(int(now_us + i * step), now_us, d) for i, d in enumerate(held)],
            )
            return len(held)

        return await self._write(run)

    async def due_probes(self, now_us: int, limit: int) -> list[tuple[Endpoint, ProjectConfig]]:
        def run(c: sqlite3.Connection) -> list[tuple[Endpoint, ProjectConfig]]:
            rows = c.execute(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE probe_at_us IS NOT NULL "
                "AND probe_at_us <= ? AND status = 'inactive' ORDER BY probe_at_us LIMIT ?",
                (now_us, limit),
            ).fetchall()
            endpoints = [_endpoint(r) for r in rows]
            configs = self._project_configs(c, {e.project_id for e in endpoints})
            return [(e, configs[e.project_id]) for e in endpoints if e.project_id in configs]

        return await self._read(run)

    async def reschedule_probe(self, endpoint_id: str, probe_at_us: int, attempts: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE endpoints SET probe_at_us = ?, probe_attempts = ? WHERE id = ?",
                (probe_at_us, attempts, endpoint_id),
            )
        )

    async def next_due_at(self) -> int | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT MIN(due_at_us) FROM deliveries "
                "WHERE status IN ('Scheduled', 'Retry', 'Processing')"
            ).fetchone()
        )
        return None if row is None else row[0]

    async def queue_stats(self, now_us: int) -> QueueStats:
        """One pass over the queue index (covering: only ``due_at_us`` is read) and one
        over the endpoints table."""

        def run(c: sqlite3.Connection) -> QueueStats:
            due, oldest, scheduled, held = c.execute(
                "SELECT COALESCE(SUM(due_at_us <= ?), 0), MIN(CASE WHEN due_at_us <= ? "
                "THEN due_at_us END), COALESCE(SUM(due_at_us > ? AND due_at_us < ?), 0), "
                "COALESCE(SUM(due_at_us >= ?), 0) FROM deliveries "
                "WHERE status IN ('Scheduled', 'Retry', 'Processing')",
                (now_us, now_us, now_us, HELD_US, HELD_US),
            ).fetchone()
            disabled = c.execute(
                "SELECT disabled_reason, COUNT(*) FROM endpoints WHERE status = 'inactive' "
                "GROUP BY disabled_reason"
            ).fetchall()
            return QueueStats(due, oldest, scheduled, held, {str(r): n for r, n in disabled})

        return await self._read(run)

    # ------------------------------------------------------------ operator actions

    async def replay_event(self, project_id: str, event_id: str, now_us: int) -> int:
        """Send an event again to the endpoints it went to: its finished deliveries go back
        in the queue (those still pending are left alone, so a second call is a no-op)."""
        return await self._write(lambda c: _requeue_finished(c, project_id, [event_id], now_us))

    async def create_batch_job(self, job: BatchJob) -> BatchJob:
        def run(c: sqlite3.Connection) -> BatchJob:
            active = c.execute(
                "SELECT 1 FROM batch_jobs WHERE project_id = ? AND kind = ? "
                "AND status IN ('queued', 'running') LIMIT 1",
                (job.project_id, job.kind.value),
            ).fetchone()
            if active:
                raise ConflictError(f"an active batch {job.kind.value} already exists")
            where, params = _batch_where(job)
            table = "deliveries" if job.kind is BatchKind.RETRY else "events"
            (total,) = c.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {' AND '.join(where)}",
                params,
            ).fetchone()
            created = replace(job, total=int(total))
            c.execute(
                "INSERT INTO batch_jobs (id, project_id, kind, filter, status, total, processed, "
                "requeued, error, due_at_us, created_at_us, updated_at_us) "
                "VALUES (?,?,?,?,?,?,0,0,'',?,?,?)",
                (
                    created.id,
                    created.project_id,
                    created.kind.value,
                    _json(created.filter),
                    created.status.value,
                    created.total,
                    created.created_at_us,
                    created.created_at_us,
                    created.created_at_us,
                ),
            )
            return created

        return await self._write(run)

    async def get_batch_job(self, project_id: str, job_id: str) -> BatchJob | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_JOB_COLS} FROM batch_jobs WHERE id = ? AND project_id = ?",
                (job_id, project_id),
            ).fetchone()
        )
        return None if row is None else _job(row)

    async def claim_batch_job(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> tuple[BatchJob, str] | None:
        def run(c: sqlite3.Connection) -> tuple[BatchJob, str] | None:
            row = c.execute(
                f"SELECT {_JOB_COLS} FROM batch_jobs WHERE due_at_us IS NOT NULL "
                "AND due_at_us <= ? ORDER BY due_at_us LIMIT 1",
                (now_us,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE batch_jobs SET status = 'running', lease_token = ?, due_at_us = ?, "
                "updated_at_us = ? WHERE id = ?",
                (lease_token, now_us + lease_us, now_us, row[0]),
            )
            return replace(_job(row), status=BatchStatus.RUNNING), lease_token

        return await self._write(run)

    async def run_batch_chunk(
        self, job_id: str, lease_token: str, *, limit: int, now_us: int, lease_us: int
    ) -> BatchJob:
        """Requeue the next *limit* matching rows (keyset by id); progress and cursor are
        committed with them, so a crashed job resumes where it stopped."""

        def run(c: sqlite3.Connection) -> BatchJob:
            row = c.execute(
                f"SELECT {_JOB_COLS}, cursor, lease_token FROM batch_jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None or row[-1] != lease_token:
                raise LeaseLostError("the batch job's lease was lost")
            job, cursor = _job(row), row[-2] or ""
            where, params = _batch_where(job)
            table = "deliveries" if job.kind is BatchKind.RETRY else "events"
            ids = [
                r[0]
                for r in c.execute(
                    f"SELECT id FROM {table} WHERE {' AND '.join(where)} AND id > ? "
                    "ORDER BY id LIMIT ?",
                    [*params, cursor, limit],
                )
            ]
            if job.kind is BatchKind.RETRY:
                requeued = _requeue_deliveries(c, job.project_id, ids, now_us)
            else:
                requeued = _requeue_finished(c, job.project_id, ids, now_us)
            done = len(ids) < limit
            c.execute(
                "UPDATE batch_jobs SET cursor = COALESCE(?, cursor), processed = processed + ?, "
                "requeued = requeued + ?, status = ?, due_at_us = ?, finished_at_us = ?, "
                "lease_token = ?, updated_at_us = ? WHERE id = ?",
                (
                    ids[-1] if ids else None,
                    len(ids),
                    requeued,
                    "done" if done else "running",
                    None if done else now_us + lease_us,
                    now_us if done else None,
                    None if done else lease_token,
                    now_us,
                    job_id,
                ),
            )
            return _job(
                c.execute(f"SELECT {_JOB_COLS} FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
            )

        return await self._write(run)

    # ------------------------------------------------------------ retention

    async def retention_policies(self) -> list[tuple[str, int]]:
        rows = await self._read(lambda c: c.execute("SELECT id, config FROM projects").fetchall())
        out = []
        for pid, text in rows:
            hours = stored_config(text).retention_hours
            if hours > 0:
                out.append((pid, hours))
        return out

    async def purge_before(self, project_id: str, cutoff_us: int, limit: int) -> int:
        """Delete up to *limit* rows of each table older than *cutoff_us*: small
        transactions, so delivery is never locked out for long. Returns rows deleted."""

        def run(c: sqlite3.Connection) -> int:
            n = 0
            for table in ("attempts", "deliveries", "events"):
                n += c.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                    "WHERE project_id = ? AND created_at_us < ? LIMIT ?)",
                    (project_id, cutoff_us, limit),
                ).rowcount
            return n

        return await self._write(run)

    # ------------------------------------------------------------ broadcast fan-out

    async def claim_fanout(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> FanoutJob | None:
        """Lease the oldest broadcast whose fan-out is due (new, or its lease expired)."""

        def run(c: sqlite3.Connection) -> FanoutJob | None:
            row = c.execute(
                "SELECT e.id, e.project_id, e.event_type, e.data, e.headers, e.idempotency_key, "
                "p.config FROM events e JOIN projects p ON p.id = e.project_id "
                "WHERE e.fanout_due_at_us IS NOT NULL AND e.fanout_due_at_us <= ? "
                "ORDER BY e.fanout_due_at_us LIMIT 1",
                (now_us,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE events SET fanout_lease_token = ?, fanout_due_at_us = ?, "
                "status = 'Processing', updated_at_us = ? WHERE id = ?",
                (lease_token, now_us + lease_us, now_us, row[0]),
            )
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


def _event_where(project_id: str, flt: EventFilter) -> tuple[list[str], list[Any]]:
    where, params = ["project_id = ?"], [project_id]
    if flt.source_ids:
        where.append("1 = 0")  # no event has a source (outgoing projects only)
    if flt.endpoint_ids:
        where.append(
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND "
            + _in("d.endpoint_id", flt.endpoint_ids)
            + ")"
        )
        params.extend(flt.endpoint_ids)
    if flt.idempotency_key:
        where.append("idempotency_key = ?")
        params.append(flt.idempotency_key)
    if flt.query:
        where.append("(event_type = ? OR id = ? OR idempotency_key = ?)")
        params.extend([flt.query] * 3)
    _time_window(where, params, flt.start_us, flt.end_us)
    return where, params


def _delivery_where(project_id: str, flt: DeliveryFilter) -> tuple[list[str], list[Any]]:
    where, params = ["project_id = ?"], [project_id]
    if flt.endpoint_ids:
        where.append(_in("endpoint_id", flt.endpoint_ids))
        params.extend(flt.endpoint_ids)
    for column, value in (
        ("event_id", flt.event_id),
        ("subscription_id", flt.subscription_id),
        ("idempotency_key", flt.idempotency_key),
        ("event_type", flt.event_type),
    ):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if flt.statuses:
        where.append(_in("status", flt.statuses))
        params.extend(s.value for s in flt.statuses)
    _time_window(where, params, flt.start_us, flt.end_us)
    return where, params


_JOB_COLS = (
    "id, project_id, kind, filter, status, total, processed, requeued, error, created_at_us, "
    "updated_at_us, finished_at_us"
)


def _job(r: Sequence[Any]) -> BatchJob:
    return BatchJob(
        r[0],
        r[1],
        BatchKind(r[2]),
        orjson.loads(r[3]),
        BatchStatus(r[4]),
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
    )


def _batch_where(job: BatchJob) -> tuple[list[str], list[Any]]:
    if job.kind is BatchKind.RETRY:
        return _delivery_where(job.project_id, delivery_filter_from_json(job.filter))
    return _event_where(job.project_id, event_filter_from_json(job.filter))


_REQUEUE = (
    "UPDATE deliveries SET status = 'Scheduled', due_at_us = ?, attempts = 0, "
    "lease_token = NULL, description = 'requeued by an operator', updated_at_us = ? "
)


def _requeue_deliveries(c: sqlite3.Connection, project_id: str, ids: list[str], now_us: int) -> int:
    """Batch retry: failed or discarded deliveries go back in the queue."""
    if not ids:
        return 0
    return c.execute(
        _REQUEUE + f"WHERE project_id = ? AND status IN ('Failure', 'Discarded') "
        f"AND {_in('id', ids)}",
        (now_us, now_us, project_id, *ids),
    ).rowcount


def _requeue_finished(
    c: sqlite3.Connection, project_id: str, event_ids: list[str], now_us: int
) -> int:
    """Replay: every finished delivery of these events goes back in the queue."""
    if not event_ids:
        return 0
    return c.execute(
        _REQUEUE + "WHERE project_id = ? AND status IN ('Success', 'Failure', 'Discarded') "
        f"AND {_in('event_id', event_ids)}",
        (now_us, now_us, project_id, *event_ids),
    ).rowcount


def _disable(
    c: sqlite3.Connection, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
) -> None:
    """Disable an endpoint and hold (not discard) its pending deliveries."""
    c.execute(
        "UPDATE endpoints SET status = 'inactive', disabled_reason = ?, probe_at_us = ?, "
        "updated_at_us = ? WHERE id = ?",
        (reason, probe_at_us, now_us, endpoint_id),
    )
    c.execute(
        "UPDATE deliveries SET due_at_us = ?, updated_at_us = ? WHERE endpoint_id = ? "
        "AND status IN ('Scheduled', 'Retry')",
        (HELD_US, now_us, endpoint_id),
    )


def _reclaim_all(c: sqlite3.Connection, now_us: int) -> int:
    """Every lease is stale (no worker process is alive): due now. A reclaimed delivery
    keeps its Processing status, so the claim still sees it as reclaimed."""
    n = c.execute(
        "UPDATE deliveries SET due_at_us = ? WHERE status = 'Processing' AND due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    n += c.execute(
        "UPDATE events SET fanout_due_at_us = ? WHERE fanout_lease_token IS NOT NULL "
        "AND fanout_due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    n += c.execute(
        "UPDATE batch_jobs SET due_at_us = ? WHERE status = 'running' AND due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    return n


def _with_claim(d: Delivery, due_at_us: int) -> Delivery:
    return Delivery(
        d.id,
        d.project_id,
        d.event_id,
        d.endpoint_id,
        d.subscription_id,
        d.event_type,
        DeliveryStatus.PROCESSING,
        d.delivery_mode,
        d.idempotency_key,
        d.attempts + 1,
        d.retry_limit,
        d.strategy,
        d.interval_seconds,
        d.max_retry_seconds,
        due_at_us,
        d.latency_us,
        d.description,
        d.created_at_us,
        d.updated_at_us,
    )


def _time_window(where: list[str], params: list[Any], start: int | None, end: int | None) -> None:
    if start is not None:
        where.append("created_at_us >= ?")
        params.append(start)
    if end is not None:
        where.append("created_at_us <= ?")
        params.append(end)


def _endpoint_by_id(c: sqlite3.Connection, project_id: str, endpoint_id: str) -> Endpoint | None:
    row = c.execute(
        f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = ? AND project_id = ?",
        (endpoint_id, project_id),
    ).fetchone()
    return None if row is None else _endpoint(row)


class _Ingest:
    """Routing and writing of one group-commit batch, inside its transaction."""

    def __init__(self, conn: sqlite3.Connection, filters: FilterCache) -> None:
        self.c = conn
        self.filters = filters
        self.event_rows: list[tuple[Any, ...]] = []
        self.delivery_rows: list[tuple[Any, ...]] = []
        self.seen_keys: set[tuple[str, str]] = set()
        self.broadcasts = 0
        self.endpoint_cache: dict[tuple[str, str], Endpoint | None] = {}
        self.subs_cache: dict[str, list[Subscription]] = {}
        #: the endpoints of each (project, owner) fanned out to in this batch
        self.owner_cache: dict[tuple[str, str], list[Endpoint]] = {}

    def run(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        results = []
        for ev in batch:
            # every check happens before anything of the item is written, so a rejected
            # item leaves nothing behind without the cost of a savepoint per event
            try:
                results.append(self._one(ev))
            except (ValidationError, NotFoundError, ConflictError) as exc:
                results.append(IngestResult(ev.id, error=exc))
        if self.event_rows:
            self.c.executemany(
                "INSERT INTO events (id, project_id, kind, event_type, data, headers, "
                "idempotency_key, is_duplicate_event, endpoints, status, failure_reason, "
                "api_key_id, owner_id, fanout_cursor, fanout_due_at_us, acknowledged_at_us, "
                "created_at_us, updated_at_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.event_rows,
            )
        if self.delivery_rows:
            self.c.executemany(
                "INSERT INTO deliveries (id, project_id, event_id, endpoint_id, subscription_id, "
                "event_type, status, delivery_mode, idempotency_key, attempts, retry_limit, "
                "strategy, interval_seconds, max_retry_seconds, due_at_us, created_at_us, "
                "updated_at_us) VALUES (?,?,?,?,?,?,?,?,?,0,?,?,?,?,?,?,?)",
                self.delivery_rows,
            )
        return results

    def _is_duplicate(self, ev: NewEvent) -> bool:
        if not ev.idempotency_key:
            return False
        key = (ev.project_id, ev.idempotency_key)
        if key in self.seen_keys:
            return True
        self.seen_keys.add(key)
        row = self.c.execute(
            "SELECT 1 FROM events WHERE project_id = ? AND idempotency_key = ? "
            "AND is_duplicate_event = 0 LIMIT 1",
            key,
        ).fetchone()
        return row is not None

    def _one(self, ev: NewEvent) -> IngestResult:
        targets = self._targets(ev)  # validates references before anything is written
        if self._is_duplicate(ev):
            self._add_event(ev, [], duplicate=True)
            return IngestResult(ev.id, is_duplicate=True)
        endpoint_ids = [ep.id for ep, _ in targets]
        self._add_event(ev, endpoint_ids, duplicate=False)
        for endpoint, sub in targets:
            self._add_delivery(ev, endpoint, sub)
        return IngestResult(ev.id, deliveries=len(targets))

    def _targets(self, ev: NewEvent) -> list[tuple[Endpoint, Subscription]]:
        if ev.kind is EventKind.SINGLE:
            endpoint = self._endpoint(ev.project_id, ev.endpoint_id or "")
            if endpoint is None:
                raise ValidationError("endpoint not found in this project")
            return self._route([endpoint], ev, auto_subscribe=True)
        if ev.kind is EventKind.FANOUT:
            key = (ev.project_id, ev.owner_id or "")
            endpoints = self.owner_cache.get(key)
            if endpoints is None:  # once per owner and batch
                rows = self.c.execute(
                    f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE project_id = ? "
                    "AND owner_id = ? ORDER BY id",
                    key,
                ).fetchall()
                endpoints = self.owner_cache[key] = [_endpoint(r) for r in rows]
            return self._route(endpoints, ev, auto_subscribe=False)
        if ev.kind is EventKind.DYNAMIC:
            endpoint = self._dynamic_endpoint(ev)
            return self._route([endpoint], ev, auto_subscribe=False)
        return []  # broadcast: routed later, chunk by chunk, by the fan-out

    def _route(
        self, endpoints: list[Endpoint], ev: NewEvent, *, auto_subscribe: bool
    ) -> list[tuple[Endpoint, Subscription]]:
        if not endpoints:
            return []
        by_endpoint = self._subscriptions([e.id for e in endpoints])
        out = []
        for endpoint in endpoints:
            candidates = by_endpoint.get(endpoint.id)
            if not candidates and auto_subscribe:
                candidates = [self._catch_all(endpoint)]
                self.subs_cache[endpoint.id] = candidates
            if not candidates:
                continue
            match = first_match(candidates, ev.event_type, ev.parsed, ev.headers, self.filters)
            if match is not None:
                out.append((endpoint, match))
        return out

    def _endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        """Endpoints looked up once per batch: a burst to one endpoint reads it once."""
        key = (project_id, endpoint_id)
        if key not in self.endpoint_cache:
            self.endpoint_cache[key] = _endpoint_by_id(self.c, project_id, endpoint_id)
        return self.endpoint_cache[key]

    def _subscriptions(self, endpoint_ids: list[str]) -> dict[str, list[Subscription]]:
        missing = [e for e in endpoint_ids if e not in self.subs_cache]
        if missing:
            rows = self.c.execute(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE {_in('endpoint_id', missing)} "
                "ORDER BY id",
                missing,
            )
            found = group_by_endpoint(_subscription(r) for r in rows)
            for endpoint_id in missing:
                self.subs_cache[endpoint_id] = found.get(endpoint_id, [])
        return {e: self.subs_cache[e] for e in endpoint_ids}

    def _catch_all(self, endpoint: Endpoint) -> Subscription:
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
        row = _subscription_row(sub)
        self.c.execute(
            f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES ({','.join('?' * len(row))})", row
        )
        return sub

    def _dynamic_endpoint(self, ev: NewEvent) -> Endpoint:
        row = self.c.execute(
            f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE project_id = ? AND url = ? "
            "ORDER BY id LIMIT 1",
            (ev.project_id, ev.url),
        ).fetchone()
        now = ev.acknowledged_at_us
        if row is not None:
            endpoint = _endpoint(row)
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
            erow = _endpoint_row(endpoint)
            self.c.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLS}) VALUES ({','.join('?' * len(erow))})",
                erow,
            )
        has_sub = self.c.execute(
            "SELECT 1 FROM subscriptions WHERE endpoint_id = ? LIMIT 1", (endpoint.id,)
        ).fetchone()
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
            srow = _subscription_row(sub)
            self.c.execute(
                f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES ({','.join('?' * len(srow))})",
                srow,
            )
        self.subs_cache.pop(endpoint.id, None)
        return endpoint

    def _add_event(self, ev: NewEvent, endpoint_ids: list[str], *, duplicate: bool) -> None:
        row = event_row(ev, endpoint_ids, duplicate=duplicate)
        self.event_rows.append(row)
        if row[14] is not None:  # a broadcast's fan-out is due
            self.broadcasts += 1

    def _add_delivery(self, ev: NewEvent, endpoint: Endpoint, sub: Subscription) -> None:
        self.delivery_rows.append(delivery_row(ev, endpoint, sub))


class _FanoutChunk:
    """One chunk of a broadcast, inside its transaction."""

    def __init__(
        self, c: sqlite3.Connection, filters: FilterCache, job: FanoutJob, now_us: int
    ) -> None:
        self.c, self.filters, self.job, self.now = c, filters, job, now_us

    def run(self, limit: int, lease_us: int) -> ChunkResult:
        job = self.job
        row = self.c.execute(
            "SELECT fanout_cursor, fanout_lease_token, fanout_matched FROM events WHERE id = ?",
            (job.event_id,),
        ).fetchone()
        if row is None or row[1] != job.lease_token:
            raise LeaseLostError("the broadcast's fan-out lease was lost")
        endpoints = self.c.execute(
            "SELECT id, status FROM endpoints WHERE project_id = ? AND id > ? ORDER BY id LIMIT ?",
            (job.project_id, row[0] or "", limit),
        ).fetchall()
        matched, skipped = self._route(endpoints)
        done = len(endpoints) < limit
        self._write_deliveries(matched)
        self._advance(endpoints, len(matched), skipped, done, row[2], lease_us)
        return ChunkResult(len(matched), skipped, len(endpoints), done)

    def _route(self, endpoints: list[Any]) -> tuple[list[tuple[str, Subscription]], int]:
        if not endpoints:
            return [], 0
        job = self.job
        subs = [
            _subscription(r)
            for r in self.c.execute(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE project_id = ? "
                "AND endpoint_id >= ? AND endpoint_id <= ? ORDER BY endpoint_id, id",
                (job.project_id, endpoints[0][0], endpoints[-1][0]),
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

    def _release_times(self, count: int) -> list[int]:
        """Due times that release this project's broadcast deliveries at its rate."""
        job = self.job
        if job.broadcast_rate <= 0 or count == 0:
            return [self.now] * count
        (clock,) = self.c.execute(
            "SELECT broadcast_release_at_us FROM projects WHERE id = ?", (job.project_id,)
        ).fetchone()
        start = max(clock, self.now)
        step = 1_000_000 / job.broadcast_rate
        self.c.execute(
            "UPDATE projects SET broadcast_release_at_us = ? WHERE id = ?",
            (int(start + count * step), job.project_id),
        )
        return [int(start + i * step) for i in range(count)]

    def _write_deliveries(self, matched: list[tuple[str, Subscription]]) -> None:
        job, now = self.job, self.now
        rows = []
        for (endpoint_id, sub), due in zip(matched, self._release_times(len(matched)), strict=True):
            s = strategy_for(sub, job.strategy)
            rows.append(
                (
                    new_id(),
                    job.project_id,
                    job.event_id,
                    endpoint_id,
                    sub.id,
                    job.event_type,
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
            self.c.executemany(
                "INSERT OR IGNORE INTO deliveries (id, project_id, event_id, endpoint_id, "
                "subscription_id, event_type, status, delivery_mode, idempotency_key, attempts, "
                "retry_limit, strategy, interval_seconds, max_retry_seconds, due_at_us, "
                "created_at_us, updated_at_us) "
                "VALUES (?,?,?,?,?,?,'Scheduled',?,?,0,?,?,?,?,?,?,?)",
                rows,
            )

    def _advance(
        self,
        endpoints: list[Any],
        matched: int,
        skipped: int,
        done: bool,
        before: int,
        lease_us: int,
    ) -> None:
        job, now = self.job, self.now
        cursor = endpoints[-1][0] if endpoints else None
        if not done:
            self.c.execute(
                "UPDATE events SET fanout_cursor = ?, fanout_matched = fanout_matched + ?, "
                "fanout_skipped = fanout_skipped + ?, fanout_due_at_us = ?, updated_at_us = ? "
                "WHERE id = ?",
                (cursor, matched, skipped, now + lease_us, now, job.event_id),
            )
            return
        total = before + matched
        status = EventStatus.SUCCESS if total else EventStatus.FAILURE
        reason = "" if total else "no subscription matched this event"
        self.c.execute(
            "UPDATE events SET fanout_cursor = COALESCE(?, fanout_cursor), "
            "fanout_matched = fanout_matched + ?, fanout_skipped = fanout_skipped + ?, "
            "fanout_due_at_us = NULL, fanout_lease_token = NULL, fanout_done_at_us = ?, "
            "status = ?, failure_reason = ?, updated_at_us = ? WHERE id = ?",
            (cursor, matched, skipped, now, status.value, reason, now, job.event_id),
        )


def _percentile(
    c: sqlite3.Connection, event_id: str, ack: int, count: int, q: float
) -> float | None:
    if count == 0:
        return None
    offset = min(count - 1, int(q * count))
    row = c.execute(
        "SELECT updated_at_us FROM deliveries WHERE event_id = ? AND status = 'Success' "
        "ORDER BY updated_at_us LIMIT 1 OFFSET ?",
        (event_id, offset),
    ).fetchone()
    return None if row is None else (row[0] - ack) / 1000


def _broadcast_progress(
    c: sqlite3.Connection, project_id: str, event_id: str
) -> BroadcastProgress | None:
    row = c.execute(
        "SELECT fanout_matched, fanout_skipped, fanout_due_at_us, acknowledged_at_us, kind "
        "FROM events WHERE id = ? AND project_id = ?",
        (event_id, project_id),
    ).fetchone()
    if row is None:
        return None
    statuses = dict(
        c.execute(
            "SELECT status, COUNT(*) FROM deliveries WHERE event_id = ? GROUP BY status",
            (event_id,),
        ).fetchall()
    )
    first, last = c.execute(
        "SELECT MIN(updated_at_us), MAX(updated_at_us) FROM deliveries "
        "WHERE event_id = ? AND status = 'Success'",
        (event_id,),
    ).fetchone()
    ok = statuses.get("Success", 0)
    latency = {
        name: _percentile(c, event_id, row[3], ok, q)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }
    return BroadcastProgress(row[0], row[1], row[2] is None, statuses, first, last, latency)
