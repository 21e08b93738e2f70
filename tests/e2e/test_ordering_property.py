"""Ordered delivery per key, as a property (docs/ordering.md), on both stores: a real
gateway (``hookcast serve``) and a second ``hookcast worker`` process on one database,
a real local receiver that fails at random (status codes and hangs drawn by hypothesis),
publishes on several keys in a random interleaving, a worker killed -9 and started again
at a random point, and the test as the operator who resends or skips a blocked key.

Per key, the receiver never sees delivery n+1 before delivery n succeeded or ended for
good (and was skipped), and every delivery ends delivered or failed-and-skipped, in
publish order.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookcast.store import migrate
from pg_support import fresh_database
from support import ADMIN_KEY, LoopThread, ServerProcess, free_port, new_project

HTTP_TIMEOUT_S = 1  # the endpoint's timeout: a hang is longer
HANG_S = 1.4
SETTLE_S = 40.0  # every delivery of an example ends within this (bounded wait)
KEYS = ("k0", "k1", "k2")
#: what the receiver answers one attempt: a status, or "hang" (past the timeout)
OUTCOMES = st.sampled_from([200, 200, 200, 500, 503, 400, "hang"])
ENV = {
    "HOOKCAST_POLL_INTERVAL_S": "0.05",
    "HOOKCAST_LEASE_MARGIN_S": "1",
    "HOOKCAST_SHUTDOWN_GRACE_S": "1",
    "HOOKCAST_LOG_FORMAT": "text",
    "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
}
PROJECT_CONFIG = {
    # a delivery ends for good after three attempts a second apart
    "strategy": {"type": "linear", "duration": 1, "retry_count": 3},
    # the breaker never trips: failures are what this test is about
    "circuit_breaker": {"failure_threshold": 100, "minimum_request_count": 1_000_000},
}


@dataclass
class Arrival:
    key: str
    seq: int
    outcome: int | str


@dataclass
class OrderedReceiver:
    """Answers each attempt of (endpoint, key, seq) from its plan, in turn (the last
    outcome repeats), and records every arrival in order."""

    port: int = field(default_factory=free_port)
    plans: dict[tuple[str, str, int], list[int | str]] = field(default_factory=dict)
    arrivals: dict[str, list[Arrival]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = LoopThread("ordered-receiver")
        self._runner = self._thread.run(self._start())

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/{tag}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    async def _handle(self, request: web.Request) -> web.Response:
        tag = request.match_info["tag"]
        doc = orjson.loads(await request.read())
        key, seq = doc["key"], doc["seq"]
        plan = self.plans.get((tag, key, seq)) or [200]
        outcome = plan.pop(0) if len(plan) > 1 else plan[0]
        self.arrivals.setdefault(tag, []).append(Arrival(key, seq, outcome))
        if outcome == "hang":
            await asyncio.sleep(HANG_S)
            return web.Response(status=200)
        return web.Response(status=int(outcome))

    def stop(self) -> None:
        self._thread.run(self._runner.cleanup())
        self._thread.close()


class WorkerProcess:
    """``hookcast worker`` on the same database."""

    def __init__(self, db_url: str, log_path: Path) -> None:
        env = {**os.environ, **ENV, "HOOKCAST_DATABASE_URL": db_url}
        env["HOOKCAST_METRICS_PORT"] = str(free_port())
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@dataclass
class Cluster:
    server: ServerProcess
    worker: WorkerProcess
    receiver: OrderedReceiver
    db_url: str
    log_dir: Path
    project_id: str = ""
    key: str = ""
    examples: int = 0

    def restart_worker(self) -> None:
        self.worker.kill()
        self.worker = WorkerProcess(self.db_url, self.log_dir / "worker.log")

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = requests.request(
            method,
            f"{self.server.base}/api/v1/projects/{self.project_id}{path}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
            **kw,
        )
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()["data"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    log_dir = tmp_path_factory.mktemp(f"ordering-{request.param}")
    with _database(request.param, log_dir) as url:
        migrate.upgrade(url)
        receiver = OrderedReceiver()
        server = ServerProcess(
            str(log_dir / "serve.db"),
            HOOKCAST_DATABASE_URL=url,
            HOOKCAST_ADMIN_API_KEY=ADMIN_KEY,
            **ENV,
        )
        worker = WorkerProcess(url, log_dir / "worker.log")
        c = Cluster(server, worker, receiver, url, log_dir)
        c.project_id, c.key = new_project(server.base, "ordering", PROJECT_CONFIG)
        try:
            yield c
        finally:
            c.worker.kill()
            server.terminate()
            receiver.stop()


def _database(kind: str, log_dir: Path) -> Any:
    if kind == "postgres":
        return fresh_database("hookcast_ordering", migrated=False)

    class _File:
        def __enter__(self) -> str:
            return f"sqlite:///{log_dir / 'ordering.db'}"

        def __exit__(self, *exc: object) -> None:
            return None

    return _File()


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=2, max_size=7))
    plans = [draw(st.lists(OUTCOMES, min_size=1, max_size=3)) for _ in keys]
    return {
        "on_failure": draw(st.sampled_from(["block", "skip"])),
        "keys": keys,
        "plans": plans,
        "restart_after": draw(st.none() | st.integers(0, len(keys) - 1)),
        "operator": draw(st.lists(st.sampled_from(["skip", "resend"]), min_size=8, max_size=8)),
    }


@settings(
    max_examples=int(os.environ.get("HOOKCAST_ORDERING_EXAMPLES", "4")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_each_key_is_delivered_in_publish_order(cluster: Cluster, scenario: dict[str, Any]) -> None:
    c = cluster
    c.examples += 1
    tag = f"ex{c.examples}"
    ep = c.call(
        "POST",
        "/endpoints",
        json={
            "url": f"{c.receiver.url}/{tag}",
            "name": tag,
            "http_timeout": HTTP_TIMEOUT_S,
            "ordering": "per_key",
            "ordering_on_failure": scenario["on_failure"],
        },
    )
    assert ep["ordering"] == "per_key"
    seqs: dict[str, int] = {}
    events: dict[str, tuple[str, int]] = {}  # event id -> (key, seq)
    for i, (key, plan) in enumerate(zip(scenario["keys"], scenario["plans"], strict=True)):
        seq = seqs[key] = seqs.get(key, -1) + 1
        c.receiver.plans[(tag, key, seq)] = list(plan)
        event = c.call(
            "POST",
            "/events",
            json={
                "endpoint_id": ep["uid"],
                "event_type": "order.changed",
                "data": {"key": key, "seq": seq},
                "ordering_key": key,
            },
        )
        events[event["uid"]] = (key, seq)
        if scenario["restart_after"] == i:
            c.restart_worker()
    skipped = _settle(c, ep["uid"], tag, len(events), list(scenario["operator"]))
    _check(c, ep["uid"], tag, events, skipped, scenario["on_failure"])


def _settle(c: Cluster, endpoint_id: str, tag: str, count: int, operator: list[str]) -> set[str]:
    """Wait (bounded) until every delivery has ended and no key is blocked, resending or
    skipping what blocks a key as the scenario's operator; returns the skipped ids."""
    skipped: set[str] = set()
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        for block in c.call("GET", f"/endpoints/{endpoint_id}/ordering/blocked"):
            action = operator.pop(0) if operator else "skip"
            d = block["delivery_id"]
            if action == "resend":
                key, seq = _key_seq(c, d)
                c.receiver.plans[(tag, key, seq)] = [200]  # it goes through this time
                c.call("PUT", f"/eventdeliveries/{d}/resend")
            else:
                c.call("POST", f"/eventdeliveries/{d}/skip")
                skipped.add(d)
        deliveries = c.call(
            "GET", "/eventdeliveries", params={"endpointId": endpoint_id, "perPage": 100}
        )["content"]
        final = [d for d in deliveries if d["status"] in ("Success", "Failure")]
        blocked = c.call("GET", f"/endpoints/{endpoint_id}/ordering/blocked")
        if len(final) == count and not blocked:
            return skipped
        time.sleep(0.1)
    raise AssertionError(f"deliveries of {tag} did not end within {SETTLE_S}s")


def _key_seq(c: Cluster, delivery_id: str) -> tuple[str, int]:
    d = c.call("GET", f"/eventdeliveries/{delivery_id}")
    event = c.call("GET", f"/events/{d['event_id']}")
    return event["data"]["key"], event["data"]["seq"]


def _check(
    c: Cluster,
    endpoint_id: str,
    tag: str,
    events: dict[str, tuple[str, int]],
    skipped: set[str],
    on_failure: str,
) -> None:
    deliveries = c.call(
        "GET", "/eventdeliveries", params={"endpointId": endpoint_id, "perPage": 100}
    )["content"]
    ended: dict[tuple[str, int], str] = {}
    for d in deliveries:
        key, seq = events[d["event_id"]]
        assert d["ordering_key"] == key
        if d["status"] == "Failure":
            # failed for good: moved on by the policy or by the operator's skip
            note = "skipped, the next delivery" if on_failure == "skip" else "skipped by an"
            assert note in d["description"], d
            assert on_failure == "skip" or d["uid"] in skipped, d
        else:
            assert d["status"] == "Success", d
        ended[(key, seq)] = d["status"]
    arrivals = c.receiver.arrivals.get(tag, [])
    for key in {k for k, _ in events.values()}:
        mine = [a for a in arrivals if a.key == key]
        seen = [a.seq for a in mine]
        # never n+1 before n ended: the arrivals of a key go 0, 0, 1, 2, 2, ... in order
        assert seen == sorted(seen), (key, seen)
        assert sorted(set(seen)) == list(range(len(set(seen)))), (key, seen)
        for prev, nxt in itertools.pairwise(mine):
            if nxt.seq != prev.seq:
                # the last try of n before n+1: a success, or n failed for good
                assert prev.outcome == 200 or ended[(key, prev.seq)] == "Failure", (key, mine)
    assert len(ended) == len(events)
