"""One tenant's endpoints must not stall, duplicate or hide another's deliveries: the send
path, the prober, disabling on 410 and a restart of the embedded single process."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from hookcast import bootstrap
from hookcast.delivery.prober import Prober
from hookcast.delivery.sender import Sender
from hookcast.delivery.waker import Waker
from hookcast.domain.ids import new_id
from hookcast.domain.models import EndpointStatus, Secret
from pg_support import fresh_database
from support import (
    Behaviour,
    Gateway,
    Project,
    Receiver,
    ServerProcess,
    make_settings,
    new_project,
    wait_until,
)
from zoo import OK, Reply, Zoo

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def zoo() -> Iterator[Zoo]:
    z = Zoo()
    yield z
    z.stop()


def _attempts(project: Project, delivery_id: str) -> list[dict[str, Any]]:
    return project.ok("GET", f"/eventdeliveries/{delivery_id}/deliveryattempts")  # type: ignore[no-any-return]


# ---------------------------------------------------------------- one attempt, one request


def test_a_request_that_may_have_arrived_is_not_sent_again_in_the_same_attempt(
    gateway: Gateway, zoo: Zoo
) -> None:
    """The receiver reads the second request of each keep-alive connection and closes it
    without answering: that attempt fails and is retried on schedule, never re-sent at
    once behind the attempt log's back."""
    project = gateway.create_project(
        "p",
        {
            "strategy": {"type": "linear", "duration": 1},
            "circuit_breaker": {"minimum_request_count": 1000},
        },
    )
    url = zoo.script_by_index("/drop-second", {1: Reply(b"", close=True)}, Reply(OK))
    ep = project.endpoint(url)
    for i in range(6):
        project.publish(ep["uid"], data={"i": i})
        time.sleep(0.05)  # one at a time, so connections are reused
    assert wait_until(
        lambda: all(d["status"] == "Success" for d in project.deliveries()), timeout=20
    )
    sent = zoo.ids("/drop-second")
    for d in project.deliveries():
        assert len(_attempts(project, d["uid"])) == sent[d["uid"]], (d["uid"], sent)
    assert any(n > 1 for n in sent.values())  # the drop happened and was retried later


async def test_a_pooled_connection_the_receiver_closed_is_not_used() -> None:
    """Closed while idle (FIN already in): detected before the request is written."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # keep-alive promised, then closed while idle

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    sender = Sender(read_bytes=1024, capture_bytes=100, allowed_networks=LOOPBACK)
    try:
        first = await sender.send(url, b"{}", {}, 5)
        await asyncio.sleep(0.1)
        second = await sender.send(url, b"{}", {}, 5)
    finally:
        await sender.close()
        server.close()
    assert (first.status, second.status, second.error) == (200, 200, "")
    assert connections == 2


async def test_unsendable_values_are_recorded_not_raised() -> None:
    """A URL or header stored before today's checks: an error result, nothing sent."""
    sender = Sender(read_bytes=1024, capture_bytes=100, allowed_networks=LOOPBACK)
    try:
        bad_host = await sender.send("http://x..y/", b"{}", {}, 1)
        long_label = await sender.send(f"http://{'a' * 64}.com/", b"{}", {}, 1)
        header = await sender.send("http://127.0.0.1:9/", b"{}", {"X-A": "a\r\nB: c"}, 1)
        framing = await sender.send("http://127.0.0.1:9/", b"{}", {"Content-Length": "1"}, 1)
    finally:
        await sender.close()
    for result in (bad_host, long_label, header, framing):
        assert result.status is None and result.error.startswith("not sent"), result


# ---------------------------------------------------------------- the prober


def test_probes_that_raise_or_hang_do_not_starve_other_projects(tmp_path: Path, zoo: Zoo) -> None:
    settings = make_settings(str(tmp_path / "hookcast.db"))
    bootstrap.run_migrations(settings)
    store = bootstrap.build_store(settings)
    waker = Waker()
    good_url = zoo.script("/back", Reply(OK))
    hang_url = zoo.script("/hang", Reply(OK, delay_s=60))

    async def scenario() -> tuple[list[Any], Any]:
        await store.open()
        sender = Sender(read_bytes=1024, capture_bytes=100, allowed_networks=LOOPBACK)
        try:
            gw_project = await _project(store.records, "traps")
            other = await _project(store.records, "bystander")
            now = time.time_ns() // 1000
            traps = []
            for i in range(25):
                secret = "whsk_x" if i % 2 else "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"
                traps.append(
                    await _disabled(store.records, gw_project, hang_url, secret, now - 10_000)
                )
            good = await _disabled(store.records, other, good_url, "whsec_c2VjcmV0", now)
            prober = Prober(store.records, sender, waker, 0.05, base_s=30, max_s=60)
            task = asyncio.create_task(prober.run())
            try:
                for _ in range(100):
                    ep = await store.records.get_endpoint(other, good)
                    if ep is not None and ep.status is EndpointStatus.ACTIVE:
                        break
                    await asyncio.sleep(0.05)
            finally:
                prober.request_stop()
                await asyncio.wait_for(task, 15)
            rows = [await store.records.get_endpoint(gw_project, t) for t in traps]
            return rows, await store.records.get_endpoint(other, good)
        finally:
            await sender.close()
            await store.close()

    traps, good = asyncio.run(scenario())
    assert good is not None and good.status is EndpointStatus.ACTIVE
    now = time.time_ns() // 1000
    for trap in traps:
        assert trap is not None and trap.status is EndpointStatus.INACTIVE
        assert trap.probe_attempts == 1 and trap.probe_at_us is not None
        assert trap.probe_at_us > now + 50_000_000  # backed off, not due again at once


async def _project(store: Any, name: str) -> str:
    from hookcast.api import admin

    project, _, _ = await admin.create_project(store, name)
    return str(project.id)


async def _disabled(store: Any, project_id: str, url: str, secret: str, probe_at: int) -> str:
    from hookcast.domain.models import Endpoint

    now = time.time_ns() // 1000
    endpoint = Endpoint(
        new_id(), project_id, "", "trap", url, "", EndpointStatus.ACTIVE,
        (Secret(new_id(), secret, now),), True, 300, 0, 0, "application/json", None,
        "", "", "", now, now,
    )  # fmt: skip
    await store.create_endpoint(endpoint)
    await store.disable_endpoint(endpoint.id, "breaker", probe_at, now)
    return endpoint.id


# ---------------------------------------------------------------- 410 Gone


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    overrides: dict[str, Any] = {"probe_base_s": 3600.0}
    if request.param == "postgres":
        with fresh_database("hookcast_gone") as url:
            gw = Gateway(make_settings(str(tmp_path / "x.db"), database_url=url, **overrides))
            yield gw
            gw.stop()
    else:
        gw = Gateway(make_settings(str(tmp_path / "hookcast.db"), **overrides))
        yield gw
        gw.stop()


def test_deliveries_in_flight_when_an_endpoint_says_gone_are_held_and_released(
    any_gateway: Gateway, receiver: Receiver
) -> None:
    project = any_gateway.create_project("gone")
    receiver.behave("/gone", Behaviour(410, delay_s=0.5))
    ep = project.endpoint(receiver.url + "/gone")
    for i in range(3):
        project.publish(ep["uid"], data={"i": i})
    assert receiver.wait_for("/gone", 3, timeout=10)

    def held() -> bool:
        ds = project.deliveries()
        return len(ds) == 3 and all(
            d["status"] == "Retry" and "held" in d["description"] for d in ds
        )

    assert wait_until(held, 10), project.deliveries()
    assert project.ok("GET", f"/endpoints/{ep['uid']}")["status"] == "inactive"
    receiver.behave("/gone", Behaviour(200))
    project.ok("POST", f"/endpoints/{ep['uid']}/activate", 202)
    assert wait_until(
        lambda: all(d["status"] == "Success" for d in project.deliveries()), timeout=15
    ), project.deliveries()


# ---------------------------------------------------------------- embedded restart


@pytest.mark.slow
def test_the_embedded_process_reclaims_its_leases_at_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    """kill -9 of every process (the API and its worker process, as a machine crash) with
    deliveries in flight and a 30 s lease: the next start delivers them at once (no other
    process can hold them), not after the lease."""
    db = str(tmp_path / "hookcast.db")
    slow = Behaviour(delay_s=3)
    receiver.behave("/slow", slow, slow, slow, Behaviour(200))
    server = ServerProcess(db, HOOKCAST_LEASE_MARGIN_S="30")
    try:
        project_id, key = new_project(server.base, "p")
        base = f"{server.base}/api/v1/projects/{project_id}"
        auth = {"Authorization": f"Bearer {key}"}
        ep = requests.post(
            base + "/endpoints",
            json={"url": receiver.url + "/slow", "http_timeout": 30},
            headers=auth,
            timeout=10,
        ).json()["data"]
        for i in range(3):
            r = requests.post(
                base + "/events",
                json={"endpoint_id": ep["uid"], "event_type": "t", "data": {"i": i}},
                headers=auth,
                timeout=10,
            )
            assert r.status_code == 201
        assert receiver.wait_for("/slow", 3, timeout=10)
    finally:
        for child in psutil.Process(server.proc.pid).children(recursive=True):
            child.kill()
        server.kill()
    started = time.monotonic()
    again = ServerProcess(db, port=server.port)
    try:
        assert receiver.wait_for("/slow", 6, timeout=15)
        assert time.monotonic() - started < 12  # well inside the 30 s + 30 s lease
        assert "worker.reclaimed_at_start" in again.log()
    finally:
        again.terminate()


def test_the_default_layout_is_one_worker_process_beside_the_api_on_two_cores() -> None:
    assert bootstrap.process_layout(None, no_worker=False, cores=2)[0] == 1
    assert bootstrap.process_layout(None, no_worker=False, cores=1)[0] == 0
    assert bootstrap.process_layout(3, no_worker=False, cores=1)[0] == 3
    assert bootstrap.process_layout(0, no_worker=False, cores=8)[0] == 0
    assert bootstrap.process_layout(None, no_worker=True, cores=8)[0] == 0


@pytest.mark.slow
def test_a_worker_process_stops_when_its_serve_dies(tmp_path: Path) -> None:
    server = ServerProcess(str(tmp_path / "hookcast.db"))  # the default layout: 2 cores
    try:
        assert wait_until(lambda: bool(psutil.Process(server.proc.pid).children()), 10)
        [child] = psutil.Process(server.proc.pid).children()
    finally:
        server.kill()
    child.wait(timeout=20)  # SIGTERM from the kernel: a clean stop, not an orphan
    assert not child.is_running()


# ---------------------------------------------------------------- hanging neighbours


def test_hanging_endpoints_with_a_backlog_do_not_stop_the_claim_for_others(
    tmp_path: Path, zoo: Zoo
) -> None:
    """Two endpoints that never answer, each with a backlog, fill their share of the
    worker's slots and its room for waiting deliveries; a third endpoint's deliveries,
    published after them, still go out at once, long before the hanging attempts time out
    (the worker's claim must not count deliveries waiting for a busy endpoint as taken
    slots)."""
    hang_s = 40
    settings = make_settings(str(tmp_path / "hookcast.db"), worker_concurrency=16)
    gw = Gateway(settings)
    try:
        project = gw.create_project("noisy")
        hanging = [
            project.endpoint(
                zoo.script(f"/hang/{i}", Reply(OK, delay_s=hang_s)), http_timeout=hang_s
            )
            for i in range(2)
        ]
        healthy = project.endpoint(zoo.script("/ok", Reply(OK)))
        for _ in range(20):
            for ep in hanging:
                project.publish(ep["uid"])
        time.sleep(1.5)  # the hanging endpoints' attempts are in flight, their backlog waits
        for _ in range(20):
            project.publish(healthy["uid"])

        def healthy_delivered() -> bool:
            rows = project.deliveries(endpointId=healthy["uid"])
            return len(rows) == 20 and all(r["status"] == "Success" for r in rows)

        # a bound far below the hang: with the claim stopped, nothing arrives before it
        assert wait_until(healthy_delivered, timeout=hang_s / 4), [
            r["status"] for r in project.deliveries(endpointId=healthy["uid"])
        ]
    finally:
        zoo.stop()  # the hanging connections close, so the worker drains at once
        gw.stop()
