"""``hookcast relay`` as a real process: killed -9 at random points while the application
writes, and two relays at once. Whatever happens, every committed event ends up in
hookcast exactly once (one event, one delivery) and no rolled-back one ever does.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox import psycopg as outbox_psycopg
from hookcast.outbox.install import install
from hookcast.outbox.table import OutboxTable
from pg_support import fresh_database
from support import Project, Receiver, wait_until

COMMITTED = 300
ROLLED_BACK = 60


@pytest.fixture
def app_url() -> Iterator[str]:
    with fresh_database("hookcast_relay_app", migrated=False) as url:
        asyncio.run(install(url, OutboxTable()))
        yield url


@dataclass
class Writes:
    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    error: BaseException | None = None


def write_events(url: str, endpoint_id: str, seed: int, out: Writes) -> None:
    """The application: transactions of 1 to 3 events, about one in six rolled back,
    until COMMITTED events are committed (bounded)."""
    rng = random.Random(seed)
    try:
        with psycopg.connect(url) as conn:
            while len(out.committed) < COMMITTED:
                size = min(rng.randint(1, 3), COMMITTED - len(out.committed))
                roll_back = len(out.rolled_back) < ROLLED_BACK and rng.random() < 1 / 6
                ids = [
                    outbox_psycopg.publish(
                        conn,
                        OutboxEvent(
                            "order.created",
                            {"seq": len(out.committed) + i, "rolled_back": roll_back},
                            endpoint_id=endpoint_id,
                        ),
                    )
                    for i in range(size)
                ]
                if roll_back:
                    conn.rollback()
                    out.rolled_back.extend(ids)
                else:
                    conn.commit()
                    out.committed.extend(ids)
                time.sleep(rng.random() * 0.004)
    except BaseException as exc:  # surfaced by the test
        out.error = exc


def start_writer(url: str, endpoint_id: str, seed: int) -> tuple[threading.Thread, Writes]:
    writes = Writes()
    thread = threading.Thread(target=write_events, args=(url, endpoint_id, seed, writes))
    thread.start()
    return thread, writes


class RelayProcess:
    def __init__(self, app_url: str, proj: Project, log_path: Path, *extra: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        argv = [sys.executable, "-m", "hookcast", "relay", "--source-url", app_url]
        argv += ["--url", proj.gateway.base, "--key", proj.key, "--project", proj.id]
        argv += ["--poll-interval", "0.1", *extra]
        env = {**os.environ, "HOOKCAST_LOG_FORMAT": "json", "HOOKCAST_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def batches(self) -> list[dict[str, Any]]:
        return [d for d in self.lines() if d.get("event") == "outbox.batch"]

    def started(self) -> bool:
        return any(d.get("event") == "relay.starting" for d in self.lines())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")[-3000:]


def outbox_left(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id::text, status FROM hookcast_outbox").fetchall()
    return [(str(a), str(b)) for a, b in rows]


def assert_exactly_once(proj: Project, receiver: Receiver, writes: Writes) -> None:
    stored = proj.ok("GET", "/events", params={"perPage": 1000})["content"]
    # a row published again after a crash is answered as a duplicate: hookcast records
    # the attempt (is_duplicate_event, as Convoy does) but sends nothing for it
    events = [e for e in stored if not e["is_duplicate_event"]]
    duplicates = [e for e in stored if e["is_duplicate_event"]]
    keys = [e["idempotency_key"] for e in events]
    assert len(keys) == len(set(keys)), "an event was stored twice"
    assert {e["idempotency_key"] for e in duplicates} <= set(keys)
    assert sorted(keys) == sorted(f"outbox:{i}" for i in writes.committed)
    assert not set(keys) & {f"outbox:{i}" for i in writes.rolled_back}
    assert wait_until(lambda: len(receiver.at("/orders")) >= COMMITTED, timeout=60)
    deliveries = proj.deliveries()
    per_event = sorted(d["event_id"] for d in deliveries)
    assert per_event == sorted(e["uid"] for e in events), "not one delivery per event"
    received = {r.headers["X-Convoy-Event-ID"] for r in receiver.at("/orders")}
    assert received == {e["uid"] for e in events}
    bodies = [orjson.loads(r.body) for r in receiver.at("/orders")]
    assert not any(b["rolled_back"] for b in bodies)


def test_relay_killed_at_random_points_publishes_each_commit_once(
    app_url: str, project: Project, receiver: Receiver, tmp_path: Path
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    endpoint_id = project.endpoint(receiver.url + "/orders")["uid"]
    writer, writes = start_writer(app_url, endpoint_id, seed)
    kills = 0
    try:
        for k in range(3):
            relay = RelayProcess(app_url, project, tmp_path / f"relay{k}.log", "--batch", "8")
            after = rng.randint(1, 6)  # batches
            wait_until(lambda r=relay, n=after: len(r.batches()) >= n, timeout=20, step=0.005)
            time.sleep(rng.random() * 0.02)  # land anywhere in the next batch
            relay.kill()
            kills += 1
    finally:
        writer.join(60)
    assert writes.error is None, writes.error
    assert kills == 3
    final = RelayProcess(app_url, project, tmp_path / "final.log", "--drain")
    code = final.wait(60)
    assert code == 0, final.text()
    assert outbox_left(app_url) == [], f"seed {seed}"
    assert_exactly_once(project, receiver, writes)


def test_two_relays_at_once_never_publish_twice(
    app_url: str, project: Project, receiver: Receiver, tmp_path: Path
) -> None:
    endpoint_id = project.endpoint(receiver.url + "/orders")["uid"]
    relays = [
        RelayProcess(app_url, project, tmp_path / f"relay{i}.log", "--batch", "5") for i in range(2)
    ]
    try:
        assert wait_until(lambda: all(r.started() for r in relays), timeout=20), relays[0].text()
        writer, writes = start_writer(app_url, endpoint_id, random.randrange(1_000_000))
        writer.join(60)
        assert writes.error is None, writes.error
        assert wait_until(lambda: outbox_left(app_url) == [], timeout=60)
    finally:
        for r in relays:
            r.proc.send_signal(signal.SIGTERM)
        codes = [r.wait(20) for r in relays]
    assert codes == [0, 0], [r.text() for r in relays]
    batches = [b for r in relays for b in r.batches()]
    split = [sum(b["stored"] for b in r.batches()) for r in relays]
    assert sum(b["stored"] for b in batches) == COMMITTED, split
    # a row stored by one relay and published again by the other would come back as a
    # duplicate: with SKIP LOCKED and the delete in the claiming transaction, never
    assert sum(b["duplicates"] for b in batches) == 0, split
    assert all(r.lines()[-1]["event"] == "relay.stopped" for r in relays)
    assert_exactly_once(project, receiver, writes)
