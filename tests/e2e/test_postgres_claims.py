"""Four ``hookcast worker`` processes on one PostgreSQL database race for one backlog, and
no delivery is claimed twice while its lease holds.

The leases are long (a 600 s margin plus the endpoint's 30 s timeout), so none expires
during the test: any second claim of a delivery would be a bug, and it would show up as a
second request at the receiver, a second attempt row, or a delivery's attempt counter
above 1. The workers are all up and idle (each has ticked once on the empty queue)
before the whole backlog is committed in one transaction: its one NOTIFY wakes the four
together, so they claim concurrently from the first tick on.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
import requests

from hookcast.api import admin
from hookcast.domain.config import StrategyConfig
from hookcast.domain.ids import new_id
from hookcast.domain.models import Endpoint, EventKind, Secret
from hookcast.domain.ports import NewEvent
from hookcast.store import open_store
from pg_support import fresh_database
from support import Receiver, free_port, wait_until
from unit.factories import make_endpoint

WORKERS = 4
EVENTS = 2000
PATHS = ("/c0", "/c1", "/c2", "/c3")  # one endpoint each
SECRET = "claims-pg-secret-0123456789"
LEASE_MARGIN_S = 600  # a lease lasts this plus the endpoint's http_timeout
HTTP_TIMEOUT_S = 30
CLAIM_BATCH = 25  # small claims: many racing ticks per worker
READY_S = 30.0
DRAIN_S = 45.0
STOP_S = 15.0

ENV = {
    "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
    "HOOKCAST_POLL_INTERVAL_S": "0.1",
    "HOOKCAST_LEASE_MARGIN_S": str(LEASE_MARGIN_S),
    "HOOKCAST_WORKER_CONCURRENCY": "32",
    "HOOKCAST_CLAIM_BATCH": str(CLAIM_BATCH),
    "HOOKCAST_SHUTDOWN_GRACE_S": "2",
    "HOOKCAST_LOG_FORMAT": "text",
}


class Worker:
    """``hookcast worker`` as a subprocess, serving its /metrics on a port of its own."""

    def __init__(self, name: str, db_url: str, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, **ENV, "HOOKCAST_DATABASE_URL": db_url}
        env["HOOKCAST_METRICS_PORT"] = str(self.port)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __repr__(self) -> str:
        return f"{self.name}(pid={self.proc.pid}, rc={self.proc.poll()})"

    def metrics(self) -> str | None:
        if self.proc.poll() is not None:
            return None
        try:
            r = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1)
        except requests.RequestException:
            return None
        return r.text if r.status_code == 200 else None

    def metric(self, sample: str) -> float | None:
        """One sample (name with its labels) of /metrics; None when it does not answer."""
        text = self.metrics()
        if text is None:
            return None
        m = re.search(rf"^{re.escape(sample)} ([0-9.eE+-]+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def ticked(self) -> bool:
        """Its loop is running: it has claimed from the queue at least once."""
        return (self.metric("hookcast_queue_tick_seconds_count") or 0.0) >= 1

    def log(self, tail: int = 2000) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")[-tail:]
        except OSError as exc:
            return f"<no log: {exc}>"

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_S; its exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    return self.proc.wait(STOP_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                    return None
            return self.proc.returncode
        finally:
            self._log.close()


def _logs(workers: list[Worker]) -> str:
    return "".join(f"\n----- {w!r} log tail -----\n{w.log()}" for w in workers)


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database("hookcast_claims") as url:
        yield url


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[list[Worker]]:
    """The worker processes; each is stopped (killed if need be) before the database is
    dropped."""
    started: list[Worker] = []
    try:
        for i in range(WORKERS):
            started.append(Worker(f"worker{i}", db_url, tmp_path))
        yield started
    finally:
        for w in started:
            w.stop()


# ---------------------------------------------------------------- the backlog


def _now_us() -> int:
    return time.time_ns() // 1000


def _endpoint(project_id: str, url: str, now: int) -> Endpoint:
    return make_endpoint(
        id=new_id(),
        project_id=project_id,
        name=url,
        url=url,
        secrets=(Secret(new_id(), SECRET, now),),
        http_timeout=HTTP_TIMEOUT_S,
        created_at_us=now,
        updated_at_us=now,
    )


def _event(project_id: str, endpoint_id: str, seq: int, now: int) -> NewEvent:
    return NewEvent(
        id=new_id(),
        project_id=project_id,
        kind=EventKind.SINGLE,
        event_type="claims.race",
        data=b'{"seq":%d}' % seq,
        parsed={"seq": seq},
        headers={},
        idempotency_key="",
        api_key_id=None,
        acknowledged_at_us=now,
        strategy=StrategyConfig(),
        endpoint_id=endpoint_id,
    )


async def _create_endpoints(db_url: str, receiver: Receiver) -> tuple[str, list[str]]:
    store = open_store(db_url)
    await store.open()
    try:
        project, _, _ = await admin.create_project(store.records, "claims")
        endpoints = [_endpoint(project.id, receiver.url + path, _now_us()) for path in PATHS]
        for ep in endpoints:
            await store.records.create_endpoint(ep)
        return project.id, [ep.id for ep in endpoints]
    finally:
        await store.close()


async def _publish(db_url: str, project_id: str, endpoint_ids: list[str]) -> None:
    """The whole backlog, due now, in one transaction (so one NOTIFY)."""
    store = open_store(db_url)
    await store.open()
    try:
        now = _now_us()
        batch = [
            _event(project_id, endpoint_ids[i % len(endpoint_ids)], i, now) for i in range(EVENTS)
        ]
        results = await store.records.ingest(batch)
        assert len(results) == EVENTS
        assert all(r.error is None and not r.is_duplicate for r in results), results[:5]
    finally:
        await store.close()


# ---------------------------------------------------------------- the database


def _query(db_url: str, statement: LiteralString) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        return conn.execute(statement).fetchall()


def _statuses(db_url: str) -> Counter[str]:
    rows = _query(db_url, "SELECT status, COUNT(*) FROM deliveries GROUP BY status")
    return Counter({str(s): int(n) for s, n in rows})


def _header(headers: dict[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    raise KeyError(f"{name} missing: {sorted(headers)}")


# ---------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_four_workers_never_claim_a_delivery_twice(
    db_url: str, workers: list[Worker], receiver: Receiver
) -> None:
    started = time.monotonic()

    def t() -> str:
        return f"{time.monotonic() - started:5.1f}s"

    project_id, endpoint_ids = asyncio.run(_create_endpoints(db_url, receiver))
    assert wait_until(lambda: all(w.ticked() for w in workers), READY_S, step=0.1), (
        f"workers not ticking after {READY_S}s: {workers}{_logs(workers)}"
    )
    print(f"{t()} {WORKERS} workers up and idle: {workers}")

    asyncio.run(_publish(db_url, project_id, endpoint_ids))
    published = time.monotonic()
    print(f"{t()} published {EVENTS} events")

    def drained() -> bool:
        return _statuses(db_url)["Success"] == EVENTS

    ok = wait_until(drained, DRAIN_S, step=0.25)
    drain_s = time.monotonic() - published
    print(f"{t()} drained={ok} in {drain_s:.1f}s: {dict(_statuses(db_url))}")
    assert ok, f"not all Success after {DRAIN_S}s: {_statuses(db_url)}{_logs(workers)}"
    # far inside the leases: no claim below can be the reclaim of an expired lease
    assert drain_s < LEASE_MARGIN_S

    # every worker idle again (nothing in flight), then its counts, then a clean stop
    def idle() -> bool:
        return all(w.metric("hookcast_deliveries_in_flight") == 0.0 for w in workers)

    assert wait_until(idle, 10, step=0.1), f"work still in flight{_logs(workers)}"
    outcomes: dict[str, Counter[str]] = {}
    for w in workers:
        outcomes[w.name] = Counter(
            {
                o: int(w.metric(f'hookcast_deliveries_total{{outcome="{o}"}}') or 0)
                for o in ("success", "retry", "failure", "discarded")
            }
        )
        outcomes[w.name]["deferred"] = int(w.metric("hookcast_delivery_deferrals_total") or 0)
    print(f"{t()} per worker: { ({n: dict(c) for n, c in outcomes.items()}) }")
    codes = {w.name: w.stop() for w in workers}
    print(f"{t()} stopped: {codes}")

    # -------------------------------------------------------- the receiver
    deliveries = {str(d): str(e) for d, e in _query(db_url, "SELECT id, event_id FROM deliveries")}
    assert len(deliveries) == EVENTS
    received = [r for path in PATHS for r in receiver.at(path)]
    by_delivery = Counter(_header(r.headers, "X-Convoy-EventDelivery-ID") for r in received)
    twice = {d: n for d, n in by_delivery.items() if n > 1}
    assert not twice, (
        f"{len(twice)} deliveries received more than once (leases never expired): "
        f"{list(twice.items())[:10]}; db: "
        f"{_query(db_url, 'SELECT id, status, attempts FROM deliveries WHERE attempts > 1')[:10]}"
    )
    assert set(by_delivery) == set(deliveries), (
        f"missing {len(set(deliveries) - set(by_delivery))}, "
        f"unknown {len(set(by_delivery) - set(deliveries))}"
    )
    assert len(received) == EVENTS
    for r in received:
        delivery_id = _header(r.headers, "X-Convoy-EventDelivery-ID")
        assert _header(r.headers, "webhook-id") == delivery_id, r.headers
        assert _header(r.headers, "X-Convoy-Event-ID") == deliveries[delivery_id], r.headers

    # -------------------------------------------------------- the records
    per_delivery = _query(
        db_url,
        "SELECT d.id, d.status, d.attempts, d.lease_token, COUNT(a.id), "
        "COUNT(a.id) FILTER (WHERE a.success AND a.http_status = 200) "
        "FROM deliveries d LEFT JOIN attempts a ON a.delivery_id = d.id GROUP BY d.id, d.status",
    )
    wrong = [row for row in per_delivery if row[1:] != ("Success", 1, None, 1, 1)]
    assert not wrong, f"{len(wrong)} deliveries not one claim and one attempt: {wrong[:10]}"
    assert _query(db_url, "SELECT COUNT(*) FROM attempts") == [(EVENTS,)]

    # -------------------------------------------------------- the workers
    successes = {name: c["success"] for name, c in outcomes.items()}
    assert sum(successes.values()) == EVENTS, successes  # each send counted by one worker
    assert all(n > 0 for n in successes.values()), f"a worker did no work: {successes}"
    others = {n: c for n, c in outcomes.items() if c["retry"] or c["failure"] or c["discarded"]}
    assert not others, others
    assert all(code == 0 for code in codes.values()), f"unclean stop {codes}{_logs(workers)}"
