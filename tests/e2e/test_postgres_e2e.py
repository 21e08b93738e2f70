"""hookcast on PostgreSQL, end to end: the gateway delivering signed webhooks to a real
receiver, a worker in another process woken by NOTIFY, and several store instances (as
several processes would have) racing on the queue, on idempotency keys and on routing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import orjson
import pytest
import requests

from hookcast import bootstrap
from hookcast.api import admin
from hookcast.domain.config import StrategyConfig
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    EventKind,
    Secret,
)
from hookcast.domain.paging import PageRequest
from hookcast.domain.ports import AttemptRow, DeliveryFilter, Finish, Lease, NewEvent
from hookcast.store import Store, migrate, open_store
from pg_support import fresh_database
from support import (
    ADMIN_KEY,
    Behaviour,
    Gateway,
    LoopThread,
    Project,
    Receiver,
    make_settings,
    wait_until,
)

SECRET = "postgres-e2e-secret-0123"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("hookcast_e2e") as url:
        yield url


@pytest.fixture
def pg_gateway(pg_url: str, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path / "unused.db"), database_url=pg_url))
    yield gw
    gw.stop()


def _create_project(base: str, name: str) -> Project:
    """A project through the admin API of a runtime that is not a :class:`Gateway`."""
    r = requests.post(
        base + "/api/v1/projects",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    gateway = cast(Gateway, SimpleNamespace(base=base))
    return Project(gateway, data["project"]["uid"], data["api_key"]["key"])


def _verify_advanced(headers: dict[str, str], body: bytes, secret: str) -> None:
    parts = dict(p.split("=", 1) for p in headers["X-Convoy-Signature"].split(","))
    assert set(parts) == {"t", "v1"}
    message = parts["t"].encode() + b"," + body
    assert parts["v1"] == hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- the gateway


def test_gateway_on_postgres_delivers_signed_events(
    pg_gateway: Gateway, receiver: Receiver
) -> None:
    assert requests.get(pg_gateway.base + "/health", timeout=5).status_code == 200
    project = pg_gateway.create_project("pg")
    ep = project.endpoint(receiver.url + "/pg", secret=SECRET)
    sent = [project.publish(ep["uid"], "invoice.paid", {"n": i}) for i in range(20)]
    got = receiver.wait_for("/pg", 20)
    assert len(got) == 20
    assert sorted(orjson.loads(r.body)["n"] for r in got) == list(range(20))
    for r in got:
        _verify_advanced(r.headers, r.body, SECRET)
    assert wait_until(
        lambda: (
            all(d["status"] == "Success" for d in project.deliveries())
            and len(project.deliveries()) == 20
        )
    )
    one = project.deliveries(eventId=sent[0]["uid"])
    assert len(one) == 1
    attempts = project.ok("GET", f"/eventdeliveries/{one[0]['uid']}/deliveryattempts")
    assert len(attempts) == 1 and attempts[0]["http_status"] == "200 OK"


def test_gateway_on_postgres_retries_then_succeeds_and_keeps_idempotency(
    pg_gateway: Gateway, receiver: Receiver
) -> None:
    project = pg_gateway.create_project("pg-retry", {"strategy": {"duration": 1}})
    receiver.behave("/flaky", Behaviour(status=500), Behaviour(status=200))
    ep = project.endpoint(receiver.url + "/flaky", secret=SECRET)
    first = project.publish(ep["uid"], "a.b", {"x": 1}, idempotency_key="same")
    again = project.publish(ep["uid"], "a.b", {"x": 1}, idempotency_key="same")
    assert again["is_duplicate_event"] is True and first["is_duplicate_event"] is False
    got = receiver.wait_for("/flaky", 2, timeout=15)
    assert len(got) == 2
    assert wait_until(lambda: [d["status"] for d in project.deliveries()] == ["Success"], 10)
    [d] = project.deliveries()
    attempts = project.ok("GET", f"/eventdeliveries/{d['uid']}/deliveryattempts")
    assert len(attempts) == 2


def test_migrate_command_creates_the_schema_on_postgres() -> None:
    with fresh_database("hookcast_cli", migrated=False) as url:
        out = subprocess.run(
            [sys.executable, "-m", "hookcast", "migrate", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert migrate.current_revision(url) == migrate.head_revision()


def test_worker_in_another_process_is_woken_by_notify(pg_url: str, receiver: Receiver) -> None:
    """The API (no worker) and a `hookcast worker` process share only the database; with a
    30 s poll interval, a delivery within seconds can only come from NOTIFY/LISTEN."""
    settings = make_settings("unused", database_url=pg_url, poll_interval_s=30.0)
    bootstrap.run_migrations(settings)
    api = LoopThread("pg-api")
    running = api.run(bootstrap.start(settings, api=True, worker=False))
    env = {
        **os.environ,
        "HOOKCAST_DATABASE_URL": pg_url,
        "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HOOKCAST_POLL_INTERVAL_S": "30",
        "HOOKCAST_LOG_FORMAT": "text",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "hookcast", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        project = _create_project(f"http://{settings.host}:{settings.port}", "split")
        ep = project.endpoint(receiver.url + "/split", secret=SECRET)
        # the first delivery proves the worker is up (claimed at start or on a wake-up)
        project.publish(ep["uid"], "a.b", {"n": 0})
        assert len(receiver.wait_for("/split", 1, timeout=20)) == 1
        time.sleep(0.5)  # the worker is idle now, waiting up to 30 s
        started = time.monotonic()
        project.publish(ep["uid"], "a.b", {"n": 1})
        got = receiver.wait_for("/split", 2, timeout=10)
        assert len(got) == 2, "the worker process was not woken by NOTIFY"
        assert time.monotonic() - started < 5
        _verify_advanced(got[1].headers, got[1].body, SECRET)
    finally:
        # every background runner has its own waker, so even with a 30 s poll interval
        # SIGTERM stops the worker at once
        stopping = time.monotonic()
        worker.terminate()
        try:
            code = worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
            code = None
        assert code == 0 and time.monotonic() - stopping < 10, code
        api.run(bootstrap.stop(running))
        api.close()


# ---------------------------------------------------------------- several store instances

NOW = 1_800_000_000_000_000


def _endpoint(project_id: str) -> Endpoint:
    return Endpoint(
        new_id(),
        project_id,
        "",
        "ep",
        "http://127.0.0.1:9/x",
        "",
        EndpointStatus.ACTIVE,
        (Secret(new_id(), "whsec_c2VjcmV0", NOW),),
        True,
        10,
        0,
        0,
        "application/json",
        None,
        "",
        "",
        "",
        NOW,
        NOW,
    )


def _event(project_id: str, endpoint_id: str, key: str = "") -> NewEvent:
    return NewEvent(
        id=new_id(),
        project_id=project_id,
        kind=EventKind.SINGLE,
        event_type="a.b",
        data=b'{"n":1}',
        parsed={"n": 1},
        headers={},
        idempotency_key=key,
        api_key_id=None,
        acknowledged_at_us=NOW,
        strategy=StrategyConfig(),
        endpoint_id=endpoint_id,
    )


def _success(lease: Lease) -> Finish:
    attempt = AttemptRow(
        new_id(), lease.id, lease.project_id, lease.endpoint_id, "u", "POST", "127.0.0.1",
        "{}", "{}", 200, "", "", True, NOW, NOW, NOW,
    )  # fmt: skip
    return Finish(lease.id, lease.token, lease.endpoint_id, "Success", NOW, 10, "", attempt)


async def _stores(url: str, n: int) -> list[Store]:
    stores = [open_store(url) for _ in range(n)]
    for s in stores:
        await s.open()
    return stores


async def test_two_store_instances_claiming_concurrently_never_share(pg_url: str) -> None:
    a, b = await _stores(pg_url, 2)
    try:
        project, _, _ = await admin.create_project(a.records, "race", clock=lambda: NOW)
        eps = [_endpoint(project.id) for _ in range(5)]
        for ep in eps:
            await a.records.create_endpoint(ep)
        total = 1500
        for i in range(0, total, 500):
            await a.records.ingest([_event(project.id, eps[j % 5].id) for j in range(i, i + 500)])
        claimed: dict[str, list[str]] = {"a": [], "b": []}

        async def worker(name: str, store: Store, lane: int) -> None:
            n = 0
            done: list[Finish] = []
            while True:
                n += 1
                batch = await store.queue.tick(
                    done, limit=25, now_us=NOW, lease_us=30_000_000, token=f"{name}{lane}-{n}"
                )
                if not batch:
                    return
                claimed[name].extend(lease.id for lease in batch)
                done = [_success(lease) for lease in batch]

        await asyncio.gather(
            *(worker("a", a, lane) for lane in range(4)),
            *(worker("b", b, lane) for lane in range(4)),
        )
        ids = claimed["a"] + claimed["b"]
        assert len(ids) == total and len(set(ids)) == total
        assert claimed["a"] and claimed["b"]  # both really took part
        page = await a.records.list_deliveries(
            project.id, DeliveryFilter(statuses=(DeliveryStatus.SUCCESS,)), PageRequest(1)
        )
        assert page.items and page.has_next_page
        stats = await a.records.queue_stats(NOW + 10**12)
        assert stats.due == 0 and stats.scheduled == 0  # every delivery was recorded
    finally:
        for s in (a, b):
            await s.close()


async def test_idempotency_key_is_race_free_across_store_instances(pg_url: str) -> None:
    stores = await _stores(pg_url, 4)
    try:
        project, _, _ = await admin.create_project(stores[0].records, "idem", clock=lambda: NOW)
        ep = _endpoint(project.id)
        await stores[0].records.create_endpoint(ep)  # no subscription yet: each batch races for one
        keys = [f"k{i}" for i in range(20)]
        results = await asyncio.gather(
            *(s.records.ingest([_event(project.id, ep.id, k) for k in keys]) for s in stores)
        )
        originals = [r for batch in results for r in batch if not r.is_duplicate]
        assert all(r.error is None for batch in results for r in batch)
        assert len(originals) == len(keys)  # one per key, whichever store won
        subs = await stores[0].records.list_subscriptions(project.id, [ep.id], None, PageRequest())
        assert len(subs.items) == 1  # one catch-all subscription, not one per store
        deliveries = await stores[0].records.list_deliveries(
            project.id, DeliveryFilter(), PageRequest(per_page=100)
        )
        assert len(deliveries.items) == len(keys)
    finally:
        for s in stores:
            await s.close()


async def test_data_version_sees_work_committed_by_another_instance(pg_url: str) -> None:
    api, worker = await _stores(pg_url, 2)
    try:
        project, _, _ = await admin.create_project(api.records, "wake", clock=lambda: NOW)
        ep = _endpoint(project.id)
        await api.records.create_endpoint(ep)
        before = await worker.records.data_version()
        assert await worker.records.data_version() == before  # nothing new: unchanged, and cheap
        await api.records.ingest([_event(project.id, ep.id)])
        deadline = time.monotonic() + 5
        while await worker.records.data_version() == before and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert await worker.records.data_version() != before
    finally:
        await api.close()
        await worker.close()


async def test_data_version_survives_a_lost_listen_connection(pg_url: str) -> None:
    store = await _stores(pg_url, 1)
    s = store[0]
    try:
        first = await s.records.data_version()
        listener = s.db._listener
        assert listener is not None
        listener.terminate()  # as if the server dropped it
        deadline = time.monotonic() + 5
        while (s.db._listener is listener or await s.records.data_version() == first) and (
            time.monotonic() < deadline
        ):
            await s.records.data_version()
            await asyncio.sleep(0.01)
        assert s.db._listener is not listener and not s.db._listener.is_closed()
        reconnected = await s.records.data_version()
        assert reconnected != first  # a missed notification is assumed: wake up
        project, _, _ = await admin.create_project(s.records, "again", clock=lambda: NOW)
        ep = _endpoint(project.id)
        await s.records.create_endpoint(ep)
        await s.records.ingest([_event(project.id, ep.id)])
        deadline = time.monotonic() + 5
        while await s.records.data_version() == reconnected and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert await s.records.data_version() != reconnected
    finally:
        await s.close()
