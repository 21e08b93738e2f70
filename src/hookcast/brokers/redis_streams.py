"""Redis Streams sources, with redis-py's asyncio client (hiredis parses the replies).

Each consumer is a member of the source's consumer group (created at ``start_id``, with
the stream, when missing) named ``<host>-<pid>-<worker>``. A round is one of:

* ``XAUTOCLAIM`` (every ``claim_idle_ms``/2): entries another consumer read but did not
  acknowledge for ``claim_idle_ms`` (it crashed, or lost its connection) are taken over;
* ``XREADGROUP … 0``: this consumer's own pending entries, after a reconnect;
* ``XREADGROUP … COUNT batch_size BLOCK block_ms >``: new entries.

The entries of a round are handled as one batch (one group commit) and acknowledged with
one ``XACK`` afterwards, in one ``MULTI`` with the ``XADD`` of the round's dead letters to
``<stream>:dead`` (the entry's fields, plus ``reason``, ``source_id`` and
``original_id``).

An entry's ``body`` field is the message body; its other fields are the message's headers
(``x-convoy-message-type``, ``x-hookcast-event-type`` …); its id is the broker message id.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hookcast.brokers import Broker, BrokerSource, DeadLetter, Session, Verdict
from hookcast.domain.broker_messages import BrokerMessage, Fields
from hookcast.domain.errors import ValidationError

log = logging.getLogger("hookcast.brokers.redis")

KIND = "redis_stream"
BODY_FIELD = b"body"

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    url: str
    stream: str
    group: str
    start_id: str
    batch_size: int
    block_ms: int
    claim_idle_ms: int

    @property
    def dead_stream(self) -> str:
        return f"{self.stream}:dead"


def check(f: Fields) -> StreamSettings:
    """hookcast's ``pub_sub.redis_stream``: ``url`` (``redis://`` or ``rediss://``),
    ``stream``, ``consumer_group`` (default ``hookcast``), ``start_id`` (where a new group
    starts: ``0``, the default, the whole stream; ``$`` only entries added from then on),
    ``batch_size`` (COUNT, 1 to 5,000, default 200), ``block_ms`` (default 1,000),
    ``claim_idle_ms`` (how long an entry stays with a silent consumer before another takes
    it over; default 30,000)."""
    url = f.text("url", "redis://127.0.0.1:6379/0")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValidationError(f"{f.path}.url: a redis://, rediss:// or unix:// URL")
    start_id = f.text("start_id", "0", max_chars=40)
    if start_id != "$" and not all(part.isdigit() for part in start_id.split("-", 1)):
        raise ValidationError(f"{f.path}.start_id: 0, $ or a stream id like 1700000000000-0")
    return StreamSettings(
        url=url,
        stream=f.text("stream", max_chars=500),
        group=f.text("consumer_group", "hookcast", max_chars=200),
        start_id=start_id,
        batch_size=f.integer("batch_size", 200, 1, 5_000),
        block_ms=f.integer("block_ms", 1_000, 1, 60_000),
        claim_idle_ms=f.integer("claim_idle_ms", 30_000, 100, 86_400_000),
    )


def broker_message(entry_id: bytes, fields: dict[bytes, bytes]) -> BrokerMessage:
    return BrokerMessage(
        body=fields.get(BODY_FIELD, b""),
        headers={
            k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
            for k, v in fields.items()
            if k != BODY_FIELD
        },
        message_id=entry_id.decode(),
    )


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [e for _, e in reply]
    out: list[Entry] = []
    for entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1:
            entries = entries[0]  # RESP3: [[id, fields], …] wrapped once more
        out.extend((eid, fields) for eid, fields in entries if fields is not None)
    return out


class StreamConsumer:
    def __init__(self, source: BrokerSource, worker: int) -> None:
        self.source = source
        self.settings: StreamSettings = source.settings
        self.name = f"{socket.gethostname()}-{os.getpid()}-{worker}"
        self._own_pending = True  # read this consumer's pending entries first
        self._claim_cursor = "0-0"
        self._claim_at = 0.0

    async def run(self, session: Session) -> None:
        s = self.settings
        client = aioredis.Redis.from_url(
            s.url,
            socket_connect_timeout=5,
            socket_timeout=s.block_ms / 1000 + 10,
            health_check_interval=30,
            client_name=f"hookcast-source-{self.source.id}",
        )
        try:
            await self._ensure_group(client)
            session.connected(f"stream {s.stream} group {s.group} as {self.name}")
            while not session.stopping.is_set():
                batch = await self._next(client)
                if batch:
                    await self._settle(client, session, batch)
        finally:
            await client.aclose()

    async def _ensure_group(self, client: aioredis.Redis) -> None:
        s = self.settings
        try:
            await client.xgroup_create(s.stream, s.group, id=s.start_id, mkstream=True)
            log.info("broker.group_created", extra={"stream": s.stream, "group": s.group})
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _next(self, client: aioredis.Redis) -> list[Entry]:
        s = self.settings
        if time.monotonic() >= self._claim_at:
            claimed = await self._claim(client)
            if claimed:
                return claimed
        streams: dict[Any, Any] = {s.stream: "0" if self._own_pending else ">"}
        block = None if self._own_pending else s.block_ms
        reply = await client.xreadgroup(
            s.group, self.name, streams, count=s.batch_size, block=block
        )
        entries = _entries(reply)
        if self._own_pending and not entries:
            self._own_pending = False
        return entries

    async def _claim(self, client: aioredis.Redis) -> list[Entry]:
        """One page of XAUTOCLAIM; a finished scan waits claim_idle_ms/2 for the next."""
        s = self.settings
        reply = await client.xautoclaim(
            s.stream, s.group, self.name, s.claim_idle_ms, self._claim_cursor, count=s.batch_size
        )
        cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        entries = [(eid, fields) for eid, fields in reply[1] if fields is not None]
        deleted = list(reply[2]) if len(reply) > 2 else []
        if deleted:  # trimmed away while pending: nothing left to store
            await client.xack(s.stream, s.group, *deleted)
        if cursor == "0-0":
            self._claim_at = time.monotonic() + s.claim_idle_ms / 2000
        self._claim_cursor = cursor
        if entries:
            log.info(
                "broker.claimed",
                extra={"source_id": self.source.id, "stream": s.stream, "entries": len(entries)},
            )
        return entries

    async def _settle(self, client: aioredis.Redis, session: Session, batch: list[Entry]) -> None:
        s = self.settings
        verdicts = await session.handle([broker_message(eid, f) for eid, f in batch])
        pipe = client.pipeline(transaction=True)
        for (eid, fields), verdict in zip(batch, verdicts, strict=True):
            if isinstance(verdict, DeadLetter):
                log.warning(
                    "broker.dead_lettered",
                    extra={
                        "source_id": self.source.id,
                        "message_id": eid.decode(),
                        "reason": verdict.reason,
                        "to": f"stream {s.dead_stream}",
                    },
                )
                dead: dict[Any, Any] = {
                    **fields,
                    b"reason": verdict.reason.encode(),
                    b"source_id": self.source.id.encode(),
                    b"original_id": eid,
                }
                pipe.xadd(s.dead_stream, dead)
        pipe.xack(s.stream, s.group, *(eid for eid, _ in batch))
        await pipe.execute()
        _log_batch(self.source, verdicts)


def _log_batch(source: BrokerSource, verdicts: Sequence[Verdict]) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("broker.batch", extra={"source_id": source.id, "messages": len(verdicts)})


BROKER = Broker(KIND, check, StreamConsumer)
