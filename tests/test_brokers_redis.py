"""Redis Streams sources on the real Redis (127.0.0.1:6379): entries become events
delivered to a real receiver, refused ones go to ``<stream>:dead`` with their reason, a
consumer whose connection is killed reconnects, and one killed with kill -9 mid-stream
has its pending entries claimed (XAUTOCLAIM) by the next: every entry is one event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker_support import (
    REDIS_URL,
    Counts,
    Source,
    consumer_process,
    hookcast_worker,
    kill_midstream,
    redis_client,
    store_gateway,
    stream_source,
    unique,
)
from support import Gateway, Project, Receiver, make_settings, wait_until


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    c = await redis_client()
    yield c
    await c.aclose()


@pytest.fixture
async def stream(client: Any) -> AsyncIterator[str]:
    name = unique("s")
    yield name
    await client.delete(name, f"{name}:dead")


def envelope(endpoint_id: str, **data: Any) -> bytes:
    return orjson.dumps({"event_type": "t", "data": data, "endpoint_id": endpoint_id})


async def pending(client: Any, stream: str) -> int:
    info = await client.xpending(stream, "hookcast")
    return int(info["pending"])


async def test_entries_become_delivered_events_and_refusals_go_to_the_dead_stream(
    gateway: Gateway,
    project: Project,
    receiver: Receiver,
    client: Any,
    stream: str,
    tmp_path: Path,
) -> None:
    endpoint = project.endpoint(receiver.url + "/redis")
    first = await client.xadd(stream, {"body": envelope(endpoint["uid"], n=1)})
    second = await client.xadd(
        stream,
        {
            "body": orjson.dumps({"n": 2}),
            "x-hookcast-event-type": "user.created",
            "x-hookcast-endpoint-id": endpoint["uid"],
        },
    )
    bad = await client.xadd(stream, {"payload": b"{}"})  # no body field
    source = stream_source(project.id, stream)
    counts = Counts(gateway.settings.database_url)
    with consumer_process(gateway.settings.database_url, [source], tmp_path / "c.log"):
        got = receiver.wait_for("/redis", 2, timeout=30)
        assert wait_until(lambda: counts.events(project.id) >= 2, timeout=10)

        async def dead_entries() -> list[Any]:
            return list(await client.xrange(f"{stream}:dead"))

        for _ in range(200):
            dead = await dead_entries()
            if dead:
                break
            import asyncio

            await asyncio.sleep(0.05)
    assert sorted(orjson.loads(r.body)["n"] for r in got) == [1, 2]
    ids = sorted(k.split(":", 1)[1] for k in counts.keys(project.id))
    assert ids == sorted([first.decode(), second.decode()])
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"original_id"] == bad
    assert b"no body" in fields[b"reason"]
    assert fields[b"source_id"] == source.id.encode()
    assert fields[b"payload"] == b"{}"
    assert await pending(client, stream) == 0


async def test_a_killed_connection_reconnects_and_goes_on(
    gateway: Gateway, project: Project, client: Any, stream: str, tmp_path: Path
) -> None:
    endpoint = project.endpoint("http://127.0.0.1:9/unused")
    source = stream_source(project.id, stream, block_ms=200)
    counts = Counts(gateway.settings.database_url)
    log = tmp_path / "c.log"
    with consumer_process(gateway.settings.database_url, [source], log):
        await client.xadd(stream, {"body": envelope(endpoint["uid"], n=1)})
        assert wait_until(lambda: counts.events(project.id) == 1, timeout=30), log.read_text()
        name = f"hookcast-source-{source.id}"
        killed = 0
        for entry in await client.client_list():
            if entry.get("name") == name:
                killed += await client.client_kill_filter(_id=entry["id"])
        assert killed >= 1
        await client.xadd(stream, {"body": envelope(endpoint["uid"], n=2)})
        assert wait_until(lambda: counts.events(project.id) == 2, timeout=30), log.read_text()
    text = log.read_text()
    assert "broker.disconnected" in text  # what and why, then the retry
    assert text.count("broker.connected") >= 2


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    with store_gateway(request.param, tmp_path) as gw:
        yield gw


@pytest.mark.slow
async def test_kill_9_mid_stream_every_entry_becomes_exactly_one_event(
    any_gateway: Gateway,
    receiver: Receiver,
    client: Any,
    stream: str,
    tmp_path: Path,
) -> None:
    gateway = any_gateway
    project = gateway.create_project("kill")
    total = 500
    endpoint = project.endpoint(receiver.url + "/k")
    pipe = client.pipeline(transaction=False)
    for seq in range(total):
        pipe.xadd(stream, {"body": envelope(endpoint["uid"], seq=seq)})
    entry_ids = [i.decode() for i in await pipe.execute()]
    # a short claim_idle_ms: the next consumer takes over the killed one's entries soon
    source = stream_source(project.id, stream, batch_size=10, claim_idle_ms=300, block_ms=200)
    counts = Counts(gateway.settings.database_url)
    url, log = gateway.settings.database_url, tmp_path / "c.log"
    with consumer_process(url, [source], log, commit_pause_s=0.02) as first:
        at_kill = kill_midstream(first, counts, project.id, total)
    left_pending = await pending(client, stream)
    with consumer_process(url, [source], log):
        assert wait_until(lambda: counts.events(project.id) >= total, timeout=60), log.read_text()
        assert wait_until(lambda: len(receiver.at("/k")) >= total, timeout=60)
    keys = counts.keys(project.id)
    assert len(keys) == total == len(set(keys))
    assert set(keys) == {f"{source.id}:{eid}" for eid in entry_ids}
    assert sorted(d["seq"] for d in counts.data_of(project.id)) == list(range(total))
    assert counts.deliveries(project.id) == total  # duplicates are not delivered
    assert sorted(orjson.loads(r.body)["seq"] for r in receiver.at("/k")) == list(range(total))
    assert await pending(client, stream) == 0
    assert "broker.claimed" in log.read_text() or left_pending == 0
    print(
        f"killed at {at_kill} stored, {left_pending} pending; "
        f"duplicates stored: {counts.duplicates(project.id)}"
    )


async def test_runner_follows_the_sources_it_is_given(
    gateway: Gateway, project: Project, receiver: Receiver, client: Any, stream: str
) -> None:
    """The runner in the gateway's own process, on its group commit (as a worker runs it):
    a new source starts, a changed one restarts, a deleted one stops, an invalid one is
    not started."""
    from hookcast.brokers import BrokerRunner

    endpoint = project.endpoint(receiver.url + "/live")
    running = gateway._running
    listed: list[Source] = []

    async def sources() -> list[Source]:
        return list(listed)

    async def build() -> BrokerRunner:
        return BrokerRunner(sources, running.store.records, running.ingest, stop_grace_s=2)

    runner = gateway._thread.run(build())
    try:
        source = stream_source(project.id, stream, block_ms=100)
        invalid = Source("src_invalid", project.id, "bad", {"type": "kafka", "kafka": {}})
        listed += [source, invalid]
        gateway._thread.run(runner.refresh())
        assert runner.sources == [source.id]
        await client.xadd(stream, {"body": envelope(endpoint["uid"], n=1)})
        assert [orjson.loads(r.body) for r in receiver.wait_for("/live", 1, timeout=30)] == [
            {"n": 1}
        ]
        # changed: two consumers now
        changed = Source(source.id, project.id, source.name, {**source.pub_sub, "workers": 2})
        listed[0] = changed
        gateway._thread.run(runner.refresh())
        assert runner.sources == [source.id]
        await client.xadd(stream, {"body": envelope(endpoint["uid"], n=2)})
        assert len(receiver.wait_for("/live", 2, timeout=30)) == 2
        consumers = await client.xinfo_consumers(stream, "hookcast")
        assert len(consumers) >= 2
        listed.clear()
        gateway._thread.run(runner.refresh())
        assert runner.sources == []
    finally:
        gateway._thread.run(runner.close())


async def test_a_source_created_through_the_api_is_consumed_by_the_worker(
    gateway: Gateway, project: Project, receiver: Receiver, client: Any, stream: str
) -> None:
    """The whole path: ``POST /sources`` stores the pub_sub source, the worker of the
    gateway (bootstrap's broker runner) picks it up at its next read of the sources, and
    an entry added to the stream is delivered to the endpoint."""
    endpoint = project.endpoint(receiver.url + "/api-made")
    pub_sub = {"type": "redis_stream", "redis_stream": {"url": REDIS_URL, "stream": stream}}
    created = project.ok(
        "POST", "/sources", 201, json={"name": "orders", "type": "pub_sub", "pub_sub": pub_sub}
    )
    await client.xadd(stream, {"body": envelope(endpoint["uid"], n=7)})
    got = receiver.wait_for("/api-made", 1, timeout=30)
    assert [orjson.loads(r.body) for r in got] == [{"n": 7}]
    keys = Counts(gateway.settings.database_url).keys(project.id)
    assert len(keys) == 1 and keys[0].startswith(created["uid"] + ":")


@pytest.mark.slow
async def test_kill_9_of_hookcast_worker_mid_stream(
    tmp_path: Path, receiver: Receiver, client: Any, stream: str
) -> None:
    """The same with the real ``hookcast worker`` on a source made through the API."""
    total = 500
    gw = Gateway(make_settings(str(tmp_path / "w.db")))
    try:
        project = gw.create_project("w")
        endpoint = project.endpoint(receiver.url + "/w")
        options = {"batch_size": 5, "claim_idle_ms": 300, "block_ms": 100}
        pub_sub = {
            "type": "redis_stream",
            "redis_stream": {"url": REDIS_URL, "stream": stream, **options},
        }
        body = {"name": "w", "type": "pub_sub", "pub_sub": pub_sub}
        source_id = project.ok("POST", "/sources", 201, json=body)["uid"]
    finally:
        gw.stop()  # the API goes; only the worker processes below consume
    pipe = client.pipeline(transaction=False)
    for seq in range(total):
        pipe.xadd(stream, {"body": envelope(endpoint["uid"], seq=seq)})
    entry_ids = [i.decode() for i in await pipe.execute()]
    url, log = gw.settings.database_url, tmp_path / "worker.log"
    counts = Counts(url)
    with hookcast_worker(url, log) as first:
        at_kill = kill_midstream(first, counts, project.id, total)
    with hookcast_worker(url, log):
        assert wait_until(lambda: counts.events(project.id) >= total, timeout=60), log.read_text()
        assert wait_until(lambda: len(receiver.at("/w")) >= total, timeout=60)
    keys = counts.keys(project.id)
    assert len(keys) == total == len(set(keys))
    assert set(keys) == {f"{source_id}:{eid}" for eid in entry_ids}
    assert counts.deliveries(project.id) == total  # one delivery per event
    # every event reached the receiver; a delivery in flight when the worker was killed
    # is sent again (the delivery engine is at least once), which is not a second event
    assert {orjson.loads(r.body)["seq"] for r in receiver.at("/w")} == set(range(total))
    assert await pending(client, stream) == 0
    print(f"hookcast worker killed at {at_kill}; duplicates: {counts.duplicates(project.id)}")
