"""Helpers of the broker tests: the real RabbitMQ and Redis (never skipped: a test fails
saying how to start the one that is missing), a consumer process to kill -9, and counts
read from the SQLite file by another connection (so: committed)."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from support import Gateway, make_settings, wait_until

RABBIT = {"host": "127.0.0.1", "port": 5672, "login": "guest", "password": "guest"}
REDIS_URL = os.environ.get("HOOKCAST_TEST_REDIS", "redis://127.0.0.1:6379/0")
WORKER = Path(__file__).with_name("broker_worker.py")


def unique(prefix: str) -> str:
    return f"hookcast-test-{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


async def rabbit() -> Any:
    import aio_pika

    try:
        return await aio_pika.connect(**RABBIT, timeout=5)
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at 127.0.0.1:5672 (guest/guest): {exc!r}\nThe broker "
            "tests need it: start it (`service rabbitmq-server start`, or `rabbitmq-server "
            "-detached`) and run again.",
            pytrace=False,
        )


async def redis_client() -> Any:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL}: {exc!r}\nThe broker tests need it: start "
            "it (`service redis-server start`, or `redis-server --daemonize yes`) and run again.",
            pytrace=False,
        )
    return client


@dataclass(frozen=True)
class Source:
    """A pub_sub source as the store lists it."""

    id: str
    project_id: str
    name: str
    pub_sub: dict[str, Any]


def amqp_source(project_id: str, queue: str, **amqp: Any) -> Source:
    pub_sub = {"type": "amqp", "amqp": {"host": "127.0.0.1", "queue": queue, **amqp}}
    return Source(unique("src"), project_id, queue, pub_sub)


def stream_source(project_id: str, stream: str, **options: Any) -> Source:
    pub_sub = {
        "type": "redis_stream",
        "redis_stream": {"url": REDIS_URL, "stream": stream, **options},
    }
    return Source(unique("src"), project_id, stream, pub_sub)


class Counts:
    """Events and deliveries in the database (a SQLite file or PostgreSQL), read by a
    separate connection (so: committed)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    def _rows(self, sql: str, *args: Any) -> list[Any]:
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql, args).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as pg:
            return pg.execute(sql.replace("?", "%s"), args).fetchall()

    def events(self, project_id: str) -> int:
        rows = self._rows(
            "SELECT COUNT(*) FROM events WHERE project_id = ? AND NOT is_duplicate_event",
            project_id,
        )
        return int(rows[0][0])

    def duplicates(self, project_id: str) -> int:
        rows = self._rows(
            "SELECT COUNT(*) FROM events WHERE project_id = ? AND is_duplicate_event", project_id
        )
        return int(rows[0][0])

    def keys(self, project_id: str) -> list[str]:
        """The idempotency keys of the stored (non-duplicate) events, one per event."""
        rows = self._rows(
            "SELECT idempotency_key FROM events WHERE project_id = ? AND NOT is_duplicate_event",
            project_id,
        )
        return [r[0] for r in rows]

    def deliveries(self, project_id: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM deliveries WHERE project_id = ?", project_id)
        return int(rows[0][0])

    def data_of(self, project_id: str) -> list[Any]:
        rows = self._rows(
            "SELECT data FROM events WHERE project_id = ? AND NOT is_duplicate_event", project_id
        )
        return [orjson.loads(r[0]) for r in rows]


@contextmanager
def store_gateway(store: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway (API + delivery, in-process) on a SQLite file or a fresh PostgreSQL
    database."""
    if store == "sqlite":
        gw = Gateway(make_settings(str(tmp_path / "hookcast.db")))
        try:
            yield gw
        finally:
            gw.stop()
        return
    from pg_support import fresh_database

    with fresh_database("hookcast_brokers") as url:
        gw = Gateway(make_settings(str(tmp_path / "unused.db"), database_url=url))
        try:
            yield gw
        finally:
            gw.stop()


class ConsumerProcess:
    """``tests/broker_worker.py``: the broker runner in its own process, on the database,
    consuming the given sources; *commit_pause_s* holds every commit that long before
    its messages are acknowledged (the window a kill -9 should hit)."""

    def __init__(
        self, database_url: str, sources: list[Source], log_path: Path, commit_pause_s: float
    ) -> None:
        doc = orjson.dumps([s.__dict__ for s in sources]).decode()
        self._start([str(WORKER), database_url, doc, str(commit_pause_s)], log_path, {})

    def _start(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )

    @classmethod
    def hookcast_worker(cls, database_url: str, log_path: Path) -> ConsumerProcess:
        """The real ``hookcast worker``: it reads the pub_sub sources from the database
        (every 5 s) and delivers what it stores."""
        self = cls.__new__(cls)
        env = {
            "HOOKCAST_DATABASE_URL": database_url,
            "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
            "HOOKCAST_POLL_INTERVAL_S": "0.05",
        }
        self._start(["-m", "hookcast", "worker"], log_path, env)
        return self

    def kill(self) -> None:
        """kill -9: no clean-up, no acknowledgement of what is in flight."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@contextmanager
def consumer_process(
    database_url: str, sources: list[Source], log_path: Path, commit_pause_s: float = 0.0
) -> Iterator[ConsumerProcess]:
    proc = ConsumerProcess(database_url, sources, log_path, commit_pause_s)
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def hookcast_worker(database_url: str, log_path: Path) -> Iterator[ConsumerProcess]:
    proc = ConsumerProcess.hookcast_worker(database_url, log_path)
    try:
        yield proc
    finally:
        proc.stop()


def kill_midstream(proc: ConsumerProcess, counts: Counts, project_id: str, total: int) -> int:
    """Kill -9 *proc* once some but not all of *total* events are stored; the count then."""
    assert wait_until(lambda: counts.events(project_id) >= total // 5, timeout=30), (
        "the consumer stored nothing: see its log"
    )
    proc.kill()
    stored = counts.events(project_id)
    assert stored < total, f"the consumer finished ({stored}) before the kill: not mid-stream"
    return stored
