"""Broker sources: consumers that turn broker messages into stored events.

::

    BrokerRunner ─ every refresh_s: list the pub_sub sources ─ start / stop consumers
        └── per source and worker: supervise ─ Consumer.run(session) ─ on error: back off
                 └── Consumer (amqp.py, redis_streams.py): read a batch ─ session.handle
                         └── SourceHandler: map (domain.broker_messages) ─ ingest (group
                             commit) ─ verdicts ─▶ the consumer acknowledges / dead-letters

A consumer acknowledges a message only after :meth:`Session.handle` returned (the batch is
committed); when the handler raises (the database is away) the consumer acknowledges
nothing and raises in turn, so its messages are delivered again, by the broker or by the
next consumer. A message that was stored before a crash comes back as a duplicate of
itself (same idempotency key): stored once more as a duplicate, delivered once.

Adding a broker (NATS JetStream, Kafka) is one module: a ``BROKER = Broker(kind, check,
consumer)`` whose ``check`` reads the kind's object of ``pub_sub`` and whose ``consumer``
returns an object with ``run(session)``, plus its line in :data:`BROKERS`. The runner
knows nothing of any broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from hookcast.domain.broker_messages import (
    BrokerMessage,
    Fields,
    PubSubConfig,
    Refusal,
    SourceRules,
    map_message,
    parse_pub_sub,
)
from hookcast.domain.errors import HookcastError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import Project
from hookcast.domain.ports import IngestResult, NewEvent

log = logging.getLogger("hookcast.brokers")


# ------------------------------------------------------------------ what a consumer sees


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Verdict = Stored | DeadLetter


class Session(Protocol):
    """What the runner gives a consumer for one connection."""

    #: set when the consumer should finish its batch and return
    stopping: asyncio.Event

    async def handle(self, batch: Sequence[BrokerMessage]) -> list[Verdict]:
        """Store the batch (one group commit): one verdict per message, in order. Raises
        when nothing may be acknowledged (the store failed)."""
        ...

    def connected(self, detail: str) -> None:
        """The consumer is connected and reading (resets the back-off)."""
        ...


class Consumer(Protocol):
    async def run(self, session: Session) -> None:
        """Consume until ``session.stopping`` is set, then return; raise when the broker
        goes away (the runner reconnects with back-off)."""
        ...


@dataclass(frozen=True, slots=True)
class BrokerSource:
    """A source whose ``pub_sub`` has been checked."""

    id: str
    project_id: str
    name: str
    config: PubSubConfig
    #: the broker module's typed config (from ``Broker.check``)
    settings: Any

    @property
    def kind(self) -> str:
        return self.config.kind


@dataclass(frozen=True, slots=True)
class Broker:
    kind: str
    #: reads ``pub_sub.<kind>``; raises ValidationError naming the field
    check: Callable[[Fields], Any]
    #: one consumer of a source (``worker`` in 0 .. workers-1)
    consumer: Callable[[BrokerSource, int], Consumer]


def _amqp() -> Broker:
    from hookcast.brokers import amqp

    return amqp.BROKER


def _redis_stream() -> Broker:
    from hookcast.brokers import redis_streams

    return redis_streams.BROKER


#: the brokers hookcast consumes, by ``pub_sub.type`` (loaded when first used)
BROKERS: dict[str, Callable[[], Broker]] = {
    "amqp": _amqp,
    "redis_stream": _redis_stream,
}


def check_pub_sub(doc: Any) -> PubSubConfig:
    """Check a source's ``pub_sub`` object (for the ``/sources`` API: a ValidationError is
    a 400 naming the field)."""
    config = parse_pub_sub(doc, BROKERS)
    BROKERS[config.kind]().check(Fields(config.settings, f"pub_sub.{config.kind}"))
    return config


class SourceRecord(Protocol):
    """A stored source, as the store lists it."""

    @property
    def id(self) -> str: ...
    @property
    def project_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def pub_sub(self) -> Mapping[str, Any] | None: ...


def broker_source(record: SourceRecord) -> BrokerSource:
    config = parse_pub_sub(record.pub_sub, BROKERS)
    broker = BROKERS[config.kind]()
    settings = broker.check(Fields(config.settings, f"pub_sub.{config.kind}"))
    return BrokerSource(record.id, record.project_id, record.name, config, settings)


# ------------------------------------------------------------------ messages to events


class Ingest(Protocol):
    async def submit(self, event: NewEvent) -> IngestResult: ...


class Projects(Protocol):
    async def get_project(self, project_id: str) -> Project | None: ...


class Gate(Protocol):
    """The event catalog's schema check (raises ValidationError)."""

    async def check(self, project: Project, event: NewEvent) -> None: ...


class SourceGoneError(HookcastError):
    """The source's project no longer exists: nothing is acknowledged."""


class SourceHandler:
    """Maps a batch of one source's messages to events and stores them together."""

    def __init__(
        self,
        source: BrokerSource,
        projects: Projects,
        ingest: Ingest,
        *,
        max_body_bytes: int,
        gate: Gate | None = None,
        project_ttl_s: float = 5.0,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.source = source
        self._projects = projects
        self._ingest = ingest
        self._gate = gate
        self._ttl_s = project_ttl_s
        self._clock_us = clock_us
        self._rules = SourceRules(source.id, source.config.allow_broadcast, max_body_bytes)
        self._project: Project | None = None
        self._project_until = 0.0

    async def _current_project(self) -> Project:
        if self._project is None or time.monotonic() >= self._project_until:
            project = await self._projects.get_project(self.source.project_id)
            if project is None:
                raise SourceGoneError(
                    f"project {self.source.project_id} of source {self.source.id} is gone"
                )
            self._project, self._project_until = project, time.monotonic() + self._ttl_s
        return self._project

    async def __call__(self, batch: Sequence[BrokerMessage]) -> list[Verdict]:
        project = await self._current_project()
        verdicts: list[Verdict | None] = [None] * len(batch)
        pending: list[tuple[int, Awaitable[IngestResult]]] = []
        for i, message in enumerate(batch):
            event = await self._event(project, message)
            if isinstance(event, DeadLetter):
                verdicts[i] = event
            else:
                pending.append((i, self._ingest.submit(event)))
        # one group commit for the whole batch; an exception leaves it unacknowledged
        results = await asyncio.gather(*(awaitable for _, awaitable in pending))
        for (i, _), result in zip(pending, results, strict=True):
            verdicts[i] = (
                DeadLetter(result.error.message)
                if result.error is not None
                else Stored(result.event_id, result.is_duplicate)
            )
        return [v for v in verdicts if v is not None]

    async def _event(self, project: Project, message: BrokerMessage) -> NewEvent | DeadLetter:
        mapped = map_message(message, self._rules)
        if isinstance(mapped, Refusal):
            return DeadLetter(mapped.reason)
        event = NewEvent(
            id=new_id(),
            project_id=project.id,
            kind=mapped.kind,
            event_type=mapped.event_type,
            data=mapped.data,
            parsed=mapped.parsed,
            headers=mapped.headers,
            idempotency_key=mapped.idempotency_key,
            api_key_id=None,
            acknowledged_at_us=self._clock_us(),
            strategy=project.config.strategy,
            multiple_endpoint_subscriptions=project.config.multiple_endpoint_subscriptions,
            endpoint_id=mapped.endpoint_id,
            owner_id=mapped.owner_id,
        )
        if self._gate is not None:
            try:
                await self._gate.check(project, event)
            except ValidationError as exc:
                return DeadLetter(exc.message)
        return event


# ------------------------------------------------------------------ the runner


def backoff_s(failures: int, rand: Callable[[], float], base_s: float, max_s: float) -> float:
    """Exponential, capped, with jitter (half to all of the step)."""
    step = min(max_s, base_s * 2.0 ** max(0, failures - 1))
    return step * (0.5 + rand() / 2)


class _Session:
    def __init__(self, handler: SourceHandler, stopping: asyncio.Event, worker: int) -> None:
        self.handler = handler
        self.stopping = stopping
        self.worker = worker
        self.failures = 0

    async def handle(self, batch: Sequence[BrokerMessage]) -> list[Verdict]:
        return await self.handler(batch)

    def connected(self, detail: str) -> None:
        self.failures = 0
        source = self.handler.source
        log.info(
            "broker.connected",
            extra={
                "source_id": source.id,
                "kind": source.kind,
                "worker": self.worker,
                "detail": detail,
            },
        )


@dataclass
class _Running:
    key: bytes
    stopping: asyncio.Event
    tasks: list[asyncio.Task[None]]


class BrokerRunner:
    """Keeps one set of consumers per pub_sub source running: reads the sources every
    *refresh_s* (a new source starts, a changed one restarts, a deleted one stops) and
    reconnects a consumer whose broker went away, with back-off."""

    def __init__(
        self,
        list_sources: Callable[[], Awaitable[Sequence[SourceRecord]]],
        projects: Projects,
        ingest: Ingest,
        *,
        max_body_bytes: int = 1_048_576,
        gate: Gate | None = None,
        refresh_s: float = 5.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._list = list_sources
        self._projects = projects
        self._ingest = ingest
        self._max_body = max_body_bytes
        self._gate = gate
        self._refresh_s = refresh_s
        self._backoff = (backoff_base_s, backoff_max_s)
        self._grace_s = stop_grace_s
        self._rand = rand
        self._stop = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._invalid: dict[str, bytes] = {}

    @property
    def sources(self) -> list[str]:
        """The ids of the sources being consumed."""
        return sorted(self._running)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self.refresh()
                except Exception as exc:  # the store is away: keep what runs, try again
                    log.warning("broker.sources_unreadable", extra={"error": _text(exc)})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._refresh_s):
                        await self._stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every consumer (each finishes its batch within stop_grace_s)."""
        await asyncio.gather(*(self._halt(sid) for sid in list(self._running)))

    async def refresh(self) -> None:
        records = await self._list()
        wanted: dict[str, tuple[bytes, SourceRecord]] = {
            r.id: (orjson.dumps(r.pub_sub, option=orjson.OPT_SORT_KEYS), r) for r in records
        }
        gone = [
            sid
            for sid, run in self._running.items()
            if sid not in wanted or wanted[sid][0] != run.key
        ]
        for sid in gone:  # deleted, or changed: a changed one starts again below
            await self._halt(sid)
        for sid, (key, record) in wanted.items():
            if sid not in self._running and self._invalid.get(sid) != key:
                self._start(key, record)

    def _start(self, key: bytes, record: SourceRecord) -> None:
        try:
            source = broker_source(record)
        except ValidationError as exc:
            self._invalid[record.id] = key
            log.error(
                "broker.source_invalid",
                extra={
                    "source_id": record.id,
                    "error": exc.message,
                    "next": "fix the source's pub_sub through the /sources API",
                },
            )
            return
        self._invalid.pop(record.id, None)
        broker = BROKERS[source.kind]()
        stopping = asyncio.Event()
        handler = SourceHandler(
            source, self._projects, self._ingest, max_body_bytes=self._max_body, gate=self._gate
        )
        tasks = [
            asyncio.create_task(self._supervise(broker, handler, stopping, worker))
            for worker in range(source.config.workers)
        ]
        self._running[source.id] = _Running(key, stopping, tasks)
        log.info(
            "broker.source_started",
            extra={"source_id": source.id, "kind": source.kind, "workers": len(tasks)},
        )

    async def _halt(self, source_id: str) -> None:
        run = self._running.pop(source_id)
        run.stopping.set()
        _, late = await asyncio.wait(run.tasks, timeout=self._grace_s)
        for task in late:  # unacknowledged messages go back to the broker
            task.cancel()
        await asyncio.gather(*run.tasks, return_exceptions=True)
        log.info("broker.source_stopped", extra={"source_id": source_id})

    async def _supervise(
        self, broker: Broker, handler: SourceHandler, stopping: asyncio.Event, worker: int
    ) -> None:
        session = _Session(handler, stopping, worker)
        source = handler.source
        while not stopping.is_set():
            try:
                await broker.consumer(source, worker).run(session)
                if not stopping.is_set():  # never a busy loop of reconnections
                    raise ConnectionError("the consumer stopped reading")
            except Exception as exc:
                session.failures += 1
                delay = backoff_s(session.failures, self._rand, *self._backoff)
                log.warning(
                    "broker.disconnected",
                    extra={
                        "source_id": source.id,
                        "kind": source.kind,
                        "worker": worker,
                        "error": _text(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stopping.wait()


def _text(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, HookcastError) else str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
