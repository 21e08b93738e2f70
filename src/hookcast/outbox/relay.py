"""``hookcast relay``: drains an application's outbox table into hookcast.

Each tick is one transaction on the application's database: claim a batch of due rows
(``FOR UPDATE SKIP LOCKED``, so several relays share the work and never hold the same
row), publish each over hookcast's REST API with its idempotency key, then, in the same
transaction, delete the rows hookcast stored, mark failed the ones it refused, and
schedule a retry for the rest. A relay that dies mid-tick (even ``kill -9``) holds no
lock any more and has changed nothing: the rows are published again by the next relay,
and hookcast answers the ones it already stored as duplicates, which creates nothing.

``NOTIFY`` wakes the relay as soon as a writer commits; polling every
``poll_interval_s`` is the truth (a missed notification only delays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from hookcast.apiclient import ApiClient, ApiClientError
from hookcast.domain.errors import HookcastError, ValidationError
from hookcast.domain.outbox import (
    Answer,
    Backoff,
    OutboxRow,
    classify,
    publish_request,
    retry_delay,
    row_event,
)
from hookcast.outbox.table import OutboxTable

log = logging.getLogger("hookcast.outbox")

#: how the relay's connections show in ``pg_stat_activity`` (``-listen`` for LISTEN's)
APPLICATION_NAME = "hookcast-relay"

#: what losing the application's database looks like to asyncpg
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class RelayError(HookcastError):
    """The relay cannot go on (its key was refused, its table is missing)."""


@dataclass(frozen=True, slots=True)
class RelayOptions:
    batch: int = 200
    #: publish calls in flight at once, per lane (hookcast's group commit takes them
    #: in few transactions)
    concurrency: int = 64
    #: claim-and-publish loops side by side (each its own transaction)
    lanes: int = 2
    poll_interval_s: float = 1.0
    #: stop once no row is due (for scripts and tests); else run until stopped
    drain: bool = False
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        for name in ("batch", "concurrency", "lanes"):
            if getattr(self, name) < 1:
                raise ValidationError(f"relay {name}: give a positive number")
        if self.poll_interval_s <= 0:
            raise ValidationError("relay poll interval: give a positive number of seconds")


@dataclass
class Tally:
    """What the relay did, per batch and in total."""

    claimed: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    retrying: int = 0
    batches: int = 0

    def add(self, other: Tally) -> None:
        for name in ("claimed", "stored", "duplicates", "failed", "retrying", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _Result:
    row_id: str
    answer: Answer
    reason: str = ""
    duplicate: bool = False
    attempts: int = 0


@dataclass
class Relay:
    source_url: str
    client: ApiClient
    default_project: str
    table: OutboxTable = field(default_factory=OutboxTable)
    options: RelayOptions = field(default_factory=RelayOptions)
    rand: Callable[[], float] = random.random
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _listener: Any = None
    _listen_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, stop: asyncio.Event | None = None) -> Tally:
        """Relay until *stop* is set (or, with ``drain``, until no row is due); the
        application's database going away is waited out, a refused key ends the run.
        ``lanes`` loops claim and publish side by side (each its own transaction and
        connection; SKIP LOCKED keeps their rows apart), so one slow batch does not hold
        up the rows committed meanwhile."""
        stop = stop or asyncio.Event()
        total = Tally()
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.options.lanes):
                    group.create_task(self._lane(stop, total))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        finally:
            await self._close_listener()
        return total

    async def _lane(self, stop: asyncio.Event, total: Tally) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                conn = await self._connect()
            except _DB_ERRORS as exc:
                log.warning("relay.source_unreachable", extra={"error": str(exc), "retry_s": delay})
                await _sleep_or(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                if await self._serve(conn, stop, total):
                    return
            except _DB_ERRORS as exc:
                log.warning("relay.source_lost", extra={"error": str(exc)})
            finally:
                with contextlib.suppress(*_DB_ERRORS):
                    await conn.close(timeout=5)

    async def _serve(self, conn: Any, stop: asyncio.Event, total: Tally) -> bool:
        """Ticks on *conn* until stopped (True) or drained (True); raises on a lost
        connection."""
        await self._check_table(conn)
        while not stop.is_set():
            await self._ensure_listener()
            self._wake.clear()
            tally = await self.tick(conn)
            total.add(tally)
            if tally.claimed >= self.options.batch:
                continue  # more are waiting
            if self.options.drain and tally.claimed == 0:
                return True
            if tally.claimed == 0 or tally.retrying:
                await self._idle(stop)
        return True

    async def tick(self, conn: Any) -> Tally:
        """One batch, in one transaction of the application's database."""
        started = time.monotonic()
        async with conn.transaction():
            records = await conn.fetch(self.table.claim(), self.options.batch)
            if not records:
                return Tally()
            rows, broken = _rows(records)
            results = broken + await self._publish_all(rows)
            refused = next((r for r in results if r.answer is Answer.UNAUTHORIZED), None)
            if refused is not None:  # leaves the batch untouched (rolled back)
                raise RelayError(
                    f"hookcast refused the relay's API key ({refused.reason}): give a key of "
                    "the project with --key or HOOKCAST_API_KEY"
                )
            await self._record(conn, results)
        tally = _tally(results)
        log.info(
            "outbox.batch",
            extra={
                "claimed": tally.claimed,
                "stored": tally.stored,
                "duplicates": tally.duplicates,
                "failed": tally.failed,
                "retrying": tally.retrying,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return tally

    async def _publish_all(self, rows: list[OutboxRow]) -> list[_Result]:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(row: OutboxRow) -> _Result:
            async with gate:
                return await self._publish(row)

        return list(await asyncio.gather(*(one(r) for r in rows)))

    async def _publish(self, row: OutboxRow) -> _Result:
        try:
            request = publish_request(row, self.default_project)
        except ValidationError as exc:
            return _Result(row.id, Answer.REJECTED, exc.message, attempts=row.attempts)
        try:
            data = await self.client.call("POST", request.path, json=request.body)
        except ApiClientError as exc:
            answer = classify(exc.status)
            if answer is Answer.STORED:  # a 2xx that is not hookcast's envelope
                answer = Answer.RETRY
            return _Result(row.id, answer, exc.message, attempts=row.attempts)
        duplicate = isinstance(data, dict) and bool(data.get("is_duplicate_event"))
        return _Result(row.id, Answer.STORED, duplicate=duplicate)

    async def _record(self, conn: Any, results: list[_Result]) -> None:
        stored = [r.row_id for r in results if r.answer is Answer.STORED]
        failed = [r for r in results if r.answer is Answer.REJECTED]
        retry = [r for r in results if r.answer is Answer.RETRY]
        if stored:
            await conn.execute(self.table.delete(), stored)
        if failed:
            await conn.execute(
                self.table.mark_failed(), [r.row_id for r in failed], [r.reason for r in failed]
            )
        if retry:
            delays = [retry_delay(r.attempts + 1, self.rand, self.options.backoff) for r in retry]
            await conn.execute(
                self.table.schedule_retry(),
                [r.row_id for r in retry],
                delays,
                [r.reason for r in retry],
            )
            for r in retry:
                log.warning("outbox.publish_deferred", extra={"row": r.row_id, "error": r.reason})

    async def _check_table(self, conn: Any) -> None:
        found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self.table.name)
        if not found:
            raise RelayError(
                f"there is no outbox table {self.table.name} in the source database: create it "
                f"with `hookcast outbox install --database-url URL --schema {self.table.schema}`"
            )

    async def _ensure_listener(self) -> None:
        """LISTEN on its own connection; re-opened when it dropped. A hint only."""
        async with self._listen_lock:
            if self._listener is None or self._listener.is_closed():
                await self._listen()

    async def _listen(self) -> None:
        try:
            listener = await self._connect("-listen")
            await listener.add_listener(self.table.channel, self._on_notify)
        except _DB_ERRORS as exc:
            log.warning("relay.listen_failed", extra={"error": str(exc)})
            return
        self._listener = listener
        self._wake.set()  # something may have been committed while it was down

    async def _connect(self, role: str = "") -> Any:
        """A connection to the application's database, named in ``pg_stat_activity``."""
        return await asyncpg.connect(
            self.source_url, server_settings={"application_name": APPLICATION_NAME + role}
        )

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _idle(self, stop: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waits, timeout=self.options.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()

    async def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await self._listener.close(timeout=5)
            self._listener = None


def _rows(records: list[Any]) -> tuple[list[OutboxRow], list[_Result]]:
    """The claimed rows, and a failure for each that cannot be published as written."""
    rows: list[OutboxRow] = []
    broken: list[_Result] = []
    for rec in records:
        fields = dict(rec)
        try:
            fields["data"] = orjson.loads(fields["data"])
            fields["custom_headers"] = orjson.loads(fields["custom_headers"])
            event = row_event(fields)
        except (
            ValidationError,
            orjson.JSONDecodeError,
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:
            reason = exc.message if isinstance(exc, ValidationError) else str(exc)
            broken.append(_Result(str(rec["id"]), Answer.REJECTED, f"invalid row: {reason}"))
            continue
        rows.append(OutboxRow(str(rec["id"]), event, int(rec["attempts"])))
    return rows, broken


def _tally(results: list[_Result]) -> Tally:
    return Tally(
        claimed=len(results),
        stored=sum(r.answer is Answer.STORED for r in results),
        duplicates=sum(r.duplicate for r in results),
        failed=sum(r.answer is Answer.REJECTED for r in results),
        retrying=sum(r.answer is Answer.RETRY for r in results),
        batches=1,
    )


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
