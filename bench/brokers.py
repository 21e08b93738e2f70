"""Brokers: broker messages consumed and durably stored as events per second.

A ``hookcast serve --no-worker`` on a fresh SQLite file (hookcast's default durability)
holds the project and one endpoint (nothing is delivered: no worker runs, as in
``ingest``). The broker is filled first with N messages in Convoy's envelope format
(``{"event_type", "data", "endpoint_id"}``, ~1 KiB of data each, a ``message_id`` on
AMQP); then one consumer process (``python -m bench.brokers consume``: the broker runner of
``hookcast.brokers`` with the group commit, as a worker runs it) drains them with the
source's default batch (AMQP ``prefetch`` / Redis ``COUNT`` 200).

* ``amqp``: a durable RabbitMQ queue on 127.0.0.1:5672;
* ``redis_stream``: a Redis stream and consumer group on 127.0.0.1:6379.

Measured per run: events stored/s, from the first stored event to the last (the
consumer's start-up left out), read from the SQLite file by another connection; the
consumer's CPU per message. Checked per run: every message became exactly one stored
event, and the queue / the group's pending list is empty at the end (all acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import procs
from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log

NAME = "brokers"
TITLE = "Brokers: broker messages → durably stored events (one consumer process)"

_PER_CASE: dict[str, Metric] = {
    "events_per_s": Metric("messages stored as events/s", "/s"),
    "consumer_cpu_us_per_event": Metric("consumer CPU per message (after the first)", "µs"),
}
KINDS = ("amqp", "redis_stream")
METRICS: dict[str, Metric] = {
    f"brokers_{kind}_{k}": Metric(f"{kind}: {m.label}", m.unit, m.digits)
    for kind in KINDS
    for k, m in _PER_CASE.items()
}

DEAD_URL = "http://127.0.0.1:9/never-called"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379") + "/12"
PAD = "x" * 1000


@dataclass(frozen=True)
class BrokerCase:
    name: str
    events: int

    def describe(self) -> dict[str, Any]:
        return {
            "summary": f"{self.events:,} messages x 1 KiB already in {self.name}, drained by one "
            "consumer process into SQLite (group commit, default batch 200)",
            "events": self.events,
        }

    def key(self, name: str) -> str:
        return f"brokers_{self.name}_{name}"

    def metric_keys(self) -> list[str]:
        return [self.key(k) for k in _PER_CASE]

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        tag = f"hookcast-bench-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            asyncio.run(_reachable(self.name))
        except Exception as exc:  # the broker is not there: null with the reason
            where = "RabbitMQ at 127.0.0.1:5672" if self.name == "amqp" else f"Redis at {REDIS_URL}"
            return Outcome(
                unavailable=f"{where} not reachable: {exc!r}", null_keys=tuple(self.metric_keys())
            )
        with Gateway(workers=0, serve_args=["--no-worker"]) as gateway:
            endpoint = gateway.create_endpoint(DEAD_URL, "brokers")
            source = _source(self.name, tag, gateway.project_id)
            try:
                asyncio.run(_fill(self.name, tag, endpoint["uid"], self.events))
                stored, seconds, cpu_s = _drain(gateway, source, self.events)
                left = asyncio.run(_left(self.name, tag))
            finally:
                asyncio.run(_clean(self.name, tag))
        outcome = Outcome()
        outcome.metrics = {
            self.key("events_per_s"): (stored - 1) / seconds if seconds > 0 else 0.0,
            self.key("consumer_cpu_us_per_event"): cpu_s / max(1, stored - 1) * 1e6,
        }
        outcome.problems = {
            f"brokers_{self.name}_messages_not_stored": abs(self.events - stored),
            f"brokers_{self.name}_messages_unacknowledged": left,
        }
        outcome.counts = {f"brokers_{self.name}_events_stored": stored}
        return outcome


def _source(kind: str, tag: str, project_id: str) -> dict[str, Any]:
    inner = (
        {"host": "127.0.0.1", "queue": tag}
        if kind == "amqp"
        else {"url": REDIS_URL, "stream": tag, "block_ms": 100}
    )
    return {
        "id": tag,
        "project_id": project_id,
        "name": tag,
        "pub_sub": {"type": kind, kind: inner},
    }


def _message(endpoint_id: str, seq: int) -> bytes:
    data = {"seq": seq, "pad": PAD}
    return orjson.dumps({"event_type": "bench.broker", "data": data, "endpoint_id": endpoint_id})


async def _fill(kind: str, tag: str, endpoint_id: str, n: int) -> None:
    if kind == "amqp":
        import aio_pika

        async with await aio_pika.connect(host="127.0.0.1", timeout=10) as conn:
            channel = await conn.channel()
            await channel.declare_queue(tag, durable=True)
            for seq in range(n):
                message = aio_pika.Message(_message(endpoint_id, seq), message_id=f"m{seq}")
                await channel.default_exchange.publish(message, routing_key=tag)
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for start in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for seq in range(start, min(n, start + 1000)):
                pipe.xadd(tag, {"body": _message(endpoint_id, seq)})
            await pipe.execute()
    finally:
        await client.aclose()


async def _reachable(kind: str) -> None:
    if kind == "amqp":
        import aio_pika

        conn = await aio_pika.connect(host="127.0.0.1", timeout=5)
        await conn.close()
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _left(kind: str, tag: str) -> int:
    """Messages not acknowledged: still in the queue, or pending in the group."""
    if kind == "amqp":
        import aio_pika

        async with await aio_pika.connect(host="127.0.0.1", timeout=10) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(tag, durable=True, passive=True)
            return int(queue.declaration_result.message_count or 0)
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return int((await client.xpending(tag, "hookcast"))["pending"])
    finally:
        await client.aclose()


async def _clean(kind: str, tag: str) -> None:
    with contextlib.suppress(Exception):
        if kind == "amqp":
            import aio_pika

            async with await aio_pika.connect(host="127.0.0.1", timeout=10) as conn:
                channel = await conn.channel()
                for name in (tag, f"{tag}.dead"):
                    await channel.queue_delete(name)
            return
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await client.delete(tag, f"{tag}:dead")
        finally:
            await client.aclose()


def _count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def _drain(gateway: Gateway, source: dict[str, Any], n: int) -> tuple[int, float, float]:
    """Start the consumer; (events stored, seconds from the first to the last, CPU s)."""
    consumer_log = gateway.workdir / "consumer.log"
    with consumer_log.open("wb") as out:
        proc = procs.spawn(
            [
                sys.executable,
                "-m",
                "bench.brokers",
                "consume",
                gateway.database_url,
                orjson.dumps([source]).decode(),
            ],
            stderr=out,
        )
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 120
        first_at, first_cpu_s, count = 0.0, 0.0, 0
        while time.monotonic() < deadline and count < n:
            if proc.poll() is not None:
                raise procs.BenchError("consumer died:\n" + procs.tail(consumer_log))
            count = _count(gateway.sqlite_path)
            if count and not first_at:  # start-up (imports, connecting) left out
                first_at, first_cpu_s = time.monotonic(), _cpu_s(ps)
            time.sleep(0.005)
        last_at = time.monotonic()
        cpu_s = _cpu_s(ps) - first_cpu_s
        if count < n:
            log(f"  brokers: only {count} of {n} stored after 120 s")
    finally:
        procs.stop(proc, grace_s=10.0)
    return count, last_at - first_at, cpu_s


def _cpu_s(ps: psutil.Process) -> float:
    cpu = ps.cpu_times()
    return float(cpu.user + cpu.system)


def cases(options: Options) -> list[BrokerCase]:
    n = options.events or (300 if options.smoke else 3_000 if options.quick else 20_000)
    return [BrokerCase(kind, n) for kind in KINDS]


# ---------------------------------------------------------------- the consumer process


async def _consume(database_url: str, sources_doc: str) -> None:
    from dataclasses import make_dataclass

    from hookcast import bootstrap
    from hookcast.api.ingest import IngestQueue
    from hookcast.brokers import BrokerRunner
    from hookcast.settings import Settings

    record = make_dataclass("Source", ["id", "project_id", "name", "pub_sub"], frozen=True)
    sources = [record(**s) for s in orjson.loads(sources_doc)]
    settings = Settings(database_url=database_url)
    store = bootstrap.build_store(settings, api=False, worker=True)
    await store.open()
    ingest = IngestQueue(
        store.records,
        max_batch=settings.ingest_batch_max,
        wait_ms=settings.ingest_batch_wait_ms,
        on_commit=lambda: None,
    )

    async def listed() -> list[Any]:
        return sources

    runner = BrokerRunner(listed, store.records, ingest, max_body_bytes=settings.max_body_bytes)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.request_stop)
    try:
        await runner.run()
    finally:
        await ingest.close()
        await store.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "consume":
        sys.exit("usage: python -m bench.brokers consume DATABASE_URL SOURCES_JSON")
    asyncio.run(_consume(sys.argv[2], sys.argv[3]))
