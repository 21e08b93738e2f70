"""RabbitMQ (AMQP 0-9-1) sources, with aio-pika.

One connection and one channel per consumer; the queue is declared durable (with
``x-dead-letter-exchange`` when ``deadLetterExchange`` is set, as Convoy does) and bound to
``bindExchange`` when given. Up to ``prefetch`` messages are in flight: whatever has
arrived is handled as one batch (one group commit), then acknowledged with one
``basic.ack`` (``multiple``) on the batch's last delivery tag. Nothing is acknowledged
before the commit, so a consumer that dies or loses its connection leaves its messages to
be delivered again.

A message that cannot become an event is rejected (not requeued) into the queue's
dead-letter exchange when ``deadLetterExchange`` is set (the reason is logged as
``broker.dead_lettered``), else published to the durable queue ``<queue>.dead`` with the
reason in the ``x-hookcast-dead-reason`` header (confirmed by the broker before the
original is acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from pamqp.common import FieldTable

from hookcast.brokers import Broker, BrokerSource, DeadLetter, Session, Verdict
from hookcast.domain.broker_messages import DEAD_REASON, BrokerMessage, Fields
from hookcast.domain.errors import ValidationError

log = logging.getLogger("hookcast.brokers.amqp")

KIND = "amqp"
SOURCE_HEADER = "x-hookcast-source-id"
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    host: str
    port: int
    ssl: bool
    user: str
    password: str
    vhost: str
    queue: str
    exchange: str | None
    routing_key: str
    dead_letter_exchange: str | None
    prefetch: int

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"


def check(f: Fields) -> AmqpSettings:
    """Convoy's ``pub_sub.amqp``: ``schema`` (amqp | amqps), ``host``, ``port``,
    ``auth{user, password}``, ``queue``, ``bindExchange{exchange, routingKey}``,
    ``deadLetterExchange``, ``vhost``; and hookcast's ``prefetch`` (messages in flight
    per consumer, the batch size; 1 to 5,000, default 200)."""
    schema = f.text("schema", "amqp").lower()
    if schema not in ("amqp", "amqps"):
        raise ValidationError(f"{f.path}.schema: amqp or amqps, not {schema!r}")
    auth = f.child("auth", required=False)
    bind = f.child("bindExchange", required=False)
    exchange = bind.optional_text("exchange") if bind is not None else None
    return AmqpSettings(
        host=f.text("host", max_chars=255),
        port=f.integer("port", 5671 if schema == "amqps" else 5672, 1, 65535),
        ssl=schema == "amqps",
        user=auth.text("user", "guest") if auth is not None else "guest",
        password=auth.text("password", "guest") if auth is not None else "guest",
        vhost=f.text("vhost", "/", max_chars=255),
        queue=f.text("queue", max_chars=250),
        exchange=exchange,
        routing_key=(bind.text("routingKey", "") if bind is not None else "") or "",
        dead_letter_exchange=f.optional_text("deadLetterExchange"),
        prefetch=f.integer("prefetch", 200, 1, 5_000),
    )


def header_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def broker_message(message: AbstractIncomingMessage) -> BrokerMessage:
    return BrokerMessage(
        body=message.body,
        headers={k: header_text(v) for k, v in (message.headers or {}).items()},
        message_id=message.message_id or "",
    )


class AmqpConsumer:
    def __init__(self, source: BrokerSource, worker: int) -> None:
        self.source = source
        self.settings: AmqpSettings = source.settings
        self.worker = worker

    async def run(self, session: Session) -> None:
        s = self.settings
        connection = await aio_pika.connect(
            host=s.host,
            port=s.port,
            login=s.user,
            password=s.password,
            virtualhost=s.vhost,
            ssl=s.ssl,
            timeout=CONNECT_TIMEOUT_S,
            client_properties={"connection_name": f"hookcast source {self.source.id}"},
        )
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            channel = await connection.channel(publisher_confirms=True)
            channel.close_callbacks.add(lambda *_: lost.set())
            await channel.set_qos(prefetch_count=s.prefetch)
            queue = await self._declare(channel)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(inbox.put, no_ack=False)
            session.connected(f"queue {s.queue} on {s.host}:{s.port}{s.vhost}")
            await self._loop(session, channel, inbox, lost)
        finally:
            await _close(connection)

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        s = self.settings
        args: FieldTable | None = (
            {"x-dead-letter-exchange": s.dead_letter_exchange} if s.dead_letter_exchange else None
        )
        queue = await channel.declare_queue(s.queue, durable=True, arguments=args)
        if s.exchange:
            await queue.bind(s.exchange, s.routing_key)
        if not s.dead_letter_exchange:
            await channel.declare_queue(s.dead_queue, durable=True)
        return queue

    async def _loop(
        self,
        session: Session,
        channel: AbstractChannel,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        lost: asyncio.Event,
    ) -> None:
        while True:
            first = await _first(inbox, session.stopping, lost)
            if first is None:
                if lost.is_set():
                    raise ConnectionError("the AMQP connection or channel was closed")
                return  # stopping: unacknowledged messages go back to the queue
            batch = [first]
            while len(batch) < self.settings.prefetch and not inbox.empty():
                batch.append(inbox.get_nowait())
            await self._settle(session, channel, batch)

    async def _settle(
        self, session: Session, channel: AbstractChannel, batch: list[AbstractIncomingMessage]
    ) -> None:
        verdicts = await session.handle([broker_message(m) for m in batch])
        for message, verdict in zip(batch, verdicts, strict=True):
            if isinstance(verdict, DeadLetter):
                await self._dead_letter(channel, message, verdict.reason)
        # one basic.ack for the batch: "up to and including" skips the rejected ones,
        # already settled
        unsettled = [m for m in batch if not m.processed]
        if unsettled:
            await unsettled[-1].ack(multiple=True)
        _log_batch(self.source, verdicts)

    async def _dead_letter(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, reason: str
    ) -> None:
        s = self.settings
        log.warning(
            "broker.dead_lettered",
            extra={
                "source_id": self.source.id,
                "message_id": message.message_id,
                "reason": reason,
                "to": f"exchange {s.dead_letter_exchange}"
                if s.dead_letter_exchange
                else f"queue {s.dead_queue}",
            },
        )
        if s.dead_letter_exchange:
            await message.reject(requeue=False)
            return
        copy = aio_pika.Message(
            body=message.body,
            headers={
                **(message.headers or {}),
                DEAD_REASON: reason[:1000],
                SOURCE_HEADER: self.source.id,
            },
            content_type=message.content_type,
            message_id=message.message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # confirmed (publisher confirms) before the original is acknowledged
        await channel.default_exchange.publish(copy, routing_key=s.dead_queue)


async def _first(
    inbox: asyncio.Queue[AbstractIncomingMessage], stopping: asyncio.Event, lost: asyncio.Event
) -> AbstractIncomingMessage | None:
    """The next message, or None once stopping or the connection is lost."""
    if not inbox.empty():
        return inbox.get_nowait()
    get = asyncio.ensure_future(inbox.get())
    stop = asyncio.ensure_future(stopping.wait())
    gone = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait((get, stop, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (get, stop, gone):
            if not waiter.done():
                waiter.cancel()
    if get.done() and not get.cancelled():
        return get.result()
    return None


async def _close(connection: AbstractConnection) -> None:
    try:
        async with asyncio.timeout(5):
            await connection.close()
    except Exception as exc:  # the broker is already gone
        log.debug("broker.close_failed", extra={"error": str(exc)})


def _log_batch(source: BrokerSource, verdicts: Sequence[Verdict]) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("broker.batch", extra={"source_id": source.id, "messages": len(verdicts)})


BROKER = Broker(KIND, check, AmqpConsumer)
