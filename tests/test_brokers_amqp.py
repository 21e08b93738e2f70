"""RabbitMQ sources on the real broker (127.0.0.1:5672, guest/guest): messages become
events delivered to a real receiver, refused ones are dead-lettered with their reason, and
a consumer killed with kill -9 mid-stream loses nothing and stores nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from broker_support import (
    Counts,
    amqp_source,
    consumer_process,
    kill_midstream,
    rabbit,
    store_gateway,
    unique,
)
from support import Gateway, Project, Receiver, wait_until


@pytest.fixture
async def channel() -> AsyncIterator[Any]:
    connection = await rabbit()
    async with connection:
        ch = await connection.channel()
        yield ch


@pytest.fixture
async def queue_name(channel: Any) -> AsyncIterator[str]:
    name = unique("q")
    yield name
    for q in (name, f"{name}.dead", f"{name}.dlx"):
        await channel.queue_delete(q)
    await channel.exchange_delete(f"{name}-dlx")


async def publish(
    channel: Any, queue: str, body: Any, headers: dict[str, Any] | None = None, **props: Any
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    message = aio_pika.Message(raw, headers=headers or {}, **props)
    await channel.default_exchange.publish(message, routing_key=queue)


async def drain(channel: Any, queue: str, count: int) -> list[Any]:
    """*count* messages of *queue* (polled, bounded)."""
    q = await channel.declare_queue(queue, durable=True, passive=True)
    got: list[Any] = []

    def pull() -> bool:
        return len(got) >= count

    for _ in range(300):
        message = await q.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        if pull():
            break
        if message is None:
            import asyncio

            await asyncio.sleep(0.05)
    return got


async def queued(channel: Any, queue: str) -> int:
    q = await channel.declare_queue(queue, durable=True, passive=True)
    return int(q.declaration_result.message_count)


async def test_messages_become_delivered_events_and_refusals_are_dead_lettered(
    gateway: Gateway,
    project: Project,
    receiver: Receiver,
    channel: Any,
    queue_name: str,
    tmp_path: Path,
) -> None:
    endpoint = project.endpoint(receiver.url + "/amqp")
    await channel.declare_queue(queue_name, durable=True)
    # Convoy's envelope, single by default
    await publish(
        channel,
        queue_name,
        {
            "event_type": "invoice.paid",
            "data": {"n": 1},
            "endpoint_id": endpoint["uid"],
            "custom_headers": {"X-Tenant": "acme"},
        },
        message_id="m-1",
    )
    # the raw format: the body is the data, the rest in headers
    await publish(
        channel,
        queue_name,
        {"n": 2},
        {"x-hookcast-event-type": "user.created", "x-hookcast-endpoint-id": endpoint["uid"]},
        message_id="m-2",
    )
    await publish(channel, queue_name, b"{not json", message_id="m-3")
    await publish(
        channel,
        queue_name,
        {"event_type": "t", "data": {}},
        {"x-convoy-message-type": "broadcast"},
        message_id="m-4",
    )
    # refused by the store (after mapping): no such endpoint
    await publish(
        channel,
        queue_name,
        {"event_type": "t", "data": 1, "endpoint_id": "nope"},
        message_id="m-5",
    )
    source = amqp_source(project.id, queue_name)
    counts = Counts(gateway.settings.database_url)
    with consumer_process(gateway.settings.database_url, [source], tmp_path / "consumer.log"):
        got = receiver.wait_for("/amqp", 2, timeout=30)
        dead = await drain(channel, f"{queue_name}.dead", 3)
    assert sorted(orjson.loads(r.body)["n"] for r in got) == [1, 2]
    tenant = [r.headers.get("X-Tenant") for r in got]
    assert "acme" in tenant
    assert counts.events(project.id) == 2
    assert sorted(counts.keys(project.id)) == [f"{source.id}:m-1", f"{source.id}:m-2"]
    reasons = {m.message_id: m.headers["x-hookcast-dead-reason"] for m in dead}
    assert set(reasons) == {"m-3", "m-4", "m-5"}
    assert "endpoint not found" in reasons["m-5"]
    assert "not JSON" in reasons["m-3"]
    assert "allow_broadcast" in reasons["m-4"]
    assert all(m.headers["x-hookcast-source-id"] == source.id for m in dead)
    assert await queued(channel, queue_name) == 0


async def test_refused_message_is_rejected_to_the_dead_letter_exchange(
    gateway: Gateway, project: Project, channel: Any, queue_name: str, tmp_path: Path
) -> None:
    dlx = f"{queue_name}-dlx"
    exchange = await channel.declare_exchange(dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    parked = await channel.declare_queue(f"{queue_name}.dlx", durable=True)
    await parked.bind(exchange)
    args = {"x-dead-letter-exchange": dlx}
    await channel.declare_queue(queue_name, durable=True, arguments=args)
    await publish(channel, queue_name, {"event_type": "t", "data": 1}, message_id="no-target")
    source = amqp_source(project.id, queue_name, deadLetterExchange=dlx)
    log = tmp_path / "consumer.log"
    with consumer_process(gateway.settings.database_url, [source], log):
        dead = await drain(channel, f"{queue_name}.dlx", 1)
    assert [m.message_id for m in dead] == ["no-target"]
    assert dead[0].headers["x-death"][0]["reason"] == "rejected"
    assert "a single event needs an endpoint" in log.read_text()  # the reason, logged
    assert await queued(channel, queue_name) == 0


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    with store_gateway(request.param, tmp_path) as gw:
        yield gw


@pytest.mark.slow
async def test_kill_9_mid_stream_every_message_becomes_exactly_one_event(
    any_gateway: Gateway,
    receiver: Receiver,
    channel: Any,
    queue_name: str,
    tmp_path: Path,
) -> None:
    gateway = any_gateway
    project = gateway.create_project("kill")
    total = 500
    endpoint = project.endpoint(receiver.url + "/k")
    await channel.declare_queue(queue_name, durable=True)
    for seq in range(total):
        body = {"event_type": "k", "data": {"seq": seq}, "endpoint_id": endpoint["uid"]}
        await publish(channel, queue_name, body, message_id=f"m-{seq}")
    source = amqp_source(project.id, queue_name, prefetch=10)
    counts = Counts(gateway.settings.database_url)
    url, log = gateway.settings.database_url, tmp_path / "consumer.log"
    with consumer_process(url, [source], log, commit_pause_s=0.02) as first:
        at_kill = kill_midstream(first, counts, project.id, total)
    with consumer_process(url, [source], log, commit_pause_s=0.0):
        assert wait_until(lambda: counts.events(project.id) >= total, timeout=60), log.read_text()
        assert wait_until(lambda: receiver_count(receiver) >= total, timeout=60)
    keys = counts.keys(project.id)
    assert len(keys) == total == len(set(keys))
    assert set(keys) == {f"{source.id}:m-{seq}" for seq in range(total)}
    assert sorted(d["seq"] for d in counts.data_of(project.id)) == list(range(total))
    assert counts.deliveries(project.id) == total  # duplicates are not delivered
    seqs = sorted(orjson.loads(r.body)["seq"] for r in receiver.at("/k"))
    assert seqs == list(range(total))
    assert await queued(channel, queue_name) == 0
    print(f"killed at {at_kill} stored; duplicates stored: {counts.duplicates(project.id)}")


def receiver_count(receiver: Receiver) -> int:
    return len(receiver.at("/k"))


def _rabbitmqctl(*args: str) -> str:
    import shutil
    import subprocess

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail(
            "rabbitmqctl is not on PATH: this test closes a connection with it; "
            "install RabbitMQ's server tools (apt-get install rabbitmq-server)",
            pytrace=False,
        )
    done = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_closed_connection_reconnects_and_goes_on(
    gateway: Gateway, project: Project, channel: Any, queue_name: str, tmp_path: Path
) -> None:
    endpoint = project.endpoint("http://127.0.0.1:9/unused")
    await channel.declare_queue(queue_name, durable=True)
    source = amqp_source(project.id, queue_name)
    counts = Counts(gateway.settings.database_url)
    log = tmp_path / "consumer.log"

    def body(n: int) -> dict[str, Any]:
        return {"event_type": "t", "data": {"n": n}, "endpoint_id": endpoint["uid"]}

    with consumer_process(gateway.settings.database_url, [source], log):
        await publish(channel, queue_name, body(1), message_id="r-1")
        assert wait_until(lambda: counts.events(project.id) == 1, timeout=30), log.read_text()
        listed = _rabbitmqctl(
            "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
        )
        pids = [line.split("\t")[0] for line in listed.splitlines() if source.id in line]
        assert pids, listed
        for pid in pids:
            _rabbitmqctl("close_connection", pid, "closed by the test")
        await publish(channel, queue_name, body(2), message_id="r-2")
        assert wait_until(lambda: counts.events(project.id) == 2, timeout=30), log.read_text()
    text = log.read_text()
    assert "broker.disconnected" in text
    assert text.count("broker.connected") >= 2
