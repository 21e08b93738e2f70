"""Chaos: kill -9 the server at random moments under load, restart it, repeat.

Every event that got a 201 is delivered, and only deliveries that were in flight at a
crash may arrive twice. Runs on the embedded (SQLite) store with bounded cycles.

The seed is printed; set ``HOOKCAST_CHAOS_SEED`` to replay a run's kill timings.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests

from support import (
    Behaviour,
    Received,
    Receiver,
    ServerProcess,
    free_port,
    new_project,
    wait_until,
)

CYCLES = 5
CONCURRENCY = 16
MAX_EVENTS = 3000
PUBLISH_FOR_S = 40.0  # the publisher gives up after this long even if never stopped
PACE_S = 0.003  # between publishes, so the backlog stays drainable
DRAIN_S = 60.0
#: endpoint paths and how long each one takes to answer (well under http_timeout)
PATHS = {"/ep0": 0.5, "/ep1": 0.25, "/ep2": 0.1, "/ep3": 0.0, "/ep4": 0.0}
ENV = {
    "HOOKCAST_LEASE_MARGIN_S": "1",
    "HOOKCAST_WORKER_CONCURRENCY": str(CONCURRENCY),
    "HOOKCAST_SHUTDOWN_GRACE_S": "2",
}
PENDING = ("Scheduled", "Retry", "Processing")


def _header(r: Received, name: str) -> str:
    for k, v in r.headers.items():
        if k.lower() == name.lower():
            return v
    raise KeyError(f"{name} missing from a delivery to {r.path}: {sorted(r.headers)}")


def _received(receiver: Receiver) -> list[Received]:
    return [r for path in PATHS for r in receiver.at(path)]


def _delivered_events(receiver: Receiver) -> set[str]:
    return {_header(r, "X-Convoy-Event-ID") for r in _received(receiver)}


def _leased(db: str) -> dict[str, str]:
    """Deliveries leased (Processing) in the file: id -> lease token."""
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT id, lease_token FROM deliveries WHERE status = 'Processing'"
        ).fetchall()
    return {str(i): str(t) for i, t in rows}


def _pending_in_db(db: str) -> Counter[str]:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM deliveries WHERE status IN (?, ?, ?) GROUP BY status",
            PENDING,
        ).fetchall()
    return Counter({str(s): int(n) for s, n in rows})


def _describe(db: str, event_ids: list[str]) -> dict[str, object]:
    """What the file says about some events: stored or not, and their deliveries."""
    out: dict[str, object] = {}
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        for e in event_ids:
            stored = conn.execute("SELECT COUNT(*) FROM events WHERE id = ?", (e,)).fetchone()[0]
            rows = conn.execute(
                "SELECT id, status, attempts, due_at_us, lease_token, description "
                "FROM deliveries WHERE event_id = ?",
                (e,),
            ).fetchall()
            out[e] = {"event_stored": bool(stored), "deliveries": rows}
    return out


def _setup(base: str, receiver: Receiver) -> tuple[str, str, list[str]]:
    pid, key = new_project(base, "chaos")
    endpoints = []
    for path, delay in PATHS.items():
        receiver.behave(path, Behaviour(delay_s=delay))
        r = requests.post(
            f"{base}/api/v1/projects/{pid}/endpoints",
            json={"url": receiver.url + path, "name": path, "http_timeout": 2},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        endpoints.append(r.json()["data"]["uid"])
    return pid, key, endpoints


class Publisher:
    """POSTs events continuously on its own thread; only a 201 counts as accepted."""

    def __init__(self, base: str, pid: str, key: str, endpoints: list[str]) -> None:
        self._url = f"{base}/api/v1/projects/{pid}/events"
        self._key = key
        self._endpoints = endpoints
        self._lock = threading.Lock()
        self._accepted: list[str] = []
        #: requests that raised (server down or killed mid-request): outcome unknown
        self.unknown = 0
        self.refused: Counter[int] = Counter()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "publisher did not stop"

    def accepted(self) -> list[str]:
        with self._lock:
            return list(self._accepted)

    def _run(self) -> None:
        try:
            self._publish()
        except BaseException as exc:
            self.errors.append(exc)

    def _publish(self) -> None:
        deadline = time.monotonic() + PUBLISH_FOR_S
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {self._key}"
            for i in range(MAX_EVENTS):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                body: dict[str, Any] = {
                    "endpoint_id": self._endpoints[i % len(self._endpoints)],
                    "event_type": "chaos.tick",
                    "data": {"i": i},
                }
                try:
                    r = s.post(self._url, json=body, timeout=5)
                except requests.RequestException:
                    self.unknown += 1  # may or may not have been stored: not counted
                    self._stop.wait(0.05)
                    continue
                if r.status_code == 201:
                    with self._lock:
                        self._accepted.append(r.json()["data"]["uid"])
                else:
                    self.refused[r.status_code] += 1
                    self._stop.wait(0.05)
                self._stop.wait(PACE_S)


@dataclass
class Kill:
    cycle: int
    after_s: float
    signalled_at: float  # wall clock, as the receiver records
    restarted_at: float
    accepted: int
    #: accepted events the receiver had not seen yet when the server died
    undelivered: int
    #: deliveries leased in the file when the server died: id -> lease token
    leased: dict[str, str]
    #: of those, leased by the process just killed (the rest: earlier crashes' leases)
    leased_by_killed: int

    def __repr__(self) -> str:
        return (
            f"Kill({self.cycle}, after={self.after_s}s, accepted={self.accepted}, "
            f"undelivered={self.undelivered}, leased={len(self.leased)}, "
            f"leased_by_killed={self.leased_by_killed})"
        )


def _token_owner(token: str) -> str:
    return token.rsplit("-", 1)[0]  # a worker's lease tokens are "<prefix>-<claim no>"


def _chaos(
    db: str,
    servers: list[ServerProcess],
    receiver: Receiver,
    publisher: Publisher,
    rng: random.Random,
    kills: list[Kill],
) -> None:
    """CYCLES times: let it work a random while, kill -9, restart on the same port and file.

    Each new server is appended to *servers*, so the caller can always stop the last one."""
    owners_seen: set[str] = set()
    for cycle in range(CYCLES):
        server = servers[-1]
        after = rng.uniform(0.3, 1.5)
        time.sleep(after)
        assert server.proc.poll() is None, f"server died on its own: {server.log()}"
        signalled_at = time.time()
        server.proc.send_signal(signal.SIGKILL)
        server.wait(10)
        accepted = publisher.accepted()
        undelivered = len(set(accepted) - _delivered_events(receiver))
        leased = _leased(db)
        mine = [t for t in leased.values() if _token_owner(t) not in owners_seen]
        owners_seen |= {_token_owner(t) for t in leased.values()}
        restarted_at = time.time()
        kills.append(
            Kill(
                cycle,
                round(after, 3),
                signalled_at,
                restarted_at,
                len(accepted),
                undelivered,
                leased,
                len(mine),
            )
        )
        servers.append(ServerProcess(db, port=server.port, **ENV))


def _unexplained_repeats(receiver: Receiver, kills: list[Kill]) -> list[tuple[str, str]]:
    """Repeated sends of a delivery with no crash in between at which it was leased."""
    sends: dict[str, list[Received]] = {}
    for r in _received(receiver):
        sends.setdefault(_header(r, "webhook-id"), []).append(r)
    bad = []
    for delivery_id, rs in sends.items():
        rs.sort(key=lambda r: r.at)
        for first, again in pairwise(rs):
            if not any(
                first.at <= k.restarted_at
                and again.at >= k.signalled_at
                and delivery_id in k.leased
                for k in kills
            ):
                bad.append((delivery_id, first.path))
    return bad


def _check_file(db: str, accepted: list[str]) -> None:
    """One delivery per accepted event, every one a Success; nothing else left unfinished."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT event_id, status FROM deliveries").fetchall()
    statuses: dict[str, list[str]] = {}
    for event_id, status in rows:
        statuses.setdefault(event_id, []).append(status)
    wrong = {e: statuses.get(e) for e in accepted if statuses.get(e) != ["Success"]}
    assert not wrong, f"{len(wrong)} accepted events not one Success: {list(wrong.items())[:10]}"
    others = Counter(s for _, s in rows if s != "Success")
    assert not others, f"deliveries of unacknowledged events not Success: {others}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_at_random_moments_under_load_loses_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    seed = int(os.environ.get("HOOKCAST_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {seed} (replay with HOOKCAST_CHAOS_SEED={seed})")
    db = str(tmp_path / "chaos.db")
    started = time.monotonic()

    servers = [ServerProcess(db, port=free_port(), **ENV)]
    base = servers[0].base
    pid, key, endpoints = _setup(base, receiver)
    publisher = Publisher(base, pid, key, endpoints)
    publisher.start()
    kills: list[Kill] = []
    try:
        assert wait_until(lambda: len(_received(receiver)) > 0, 10), servers[0].log()
        _chaos(db, servers, receiver, publisher, random.Random(seed), kills)
        server = servers[-1]
        publisher.stop()
        accepted = publisher.accepted()
        print(f"kills: {kills}")
        print(
            f"accepted={len(accepted)} unknown={publisher.unknown} "
            f"refused={dict(publisher.refused)}"
        )
        assert not publisher.errors, publisher.errors
        assert not [s for s in publisher.refused if s < 500], publisher.refused
        assert len(set(accepted)) == len(accepted), "an event id was handed out twice"

        def drained() -> bool:
            return set(accepted) <= _delivered_events(receiver) and not _pending_in_db(db)

        ok = wait_until(drained, DRAIN_S, step=0.2)
        missing = set(accepted) - _delivered_events(receiver)
        assert not missing, (
            f"{len(missing)} accepted events never delivered (seed {seed}): "
            f"{_describe(db, sorted(missing)[:10])}; kills: {kills}; log: {server.log()}"
        )
        assert ok, f"deliveries still pending after {DRAIN_S}s: {_pending_in_db(db)}"
    finally:
        publisher.stop()
        code = servers[-1].terminate()
    assert code == 0, f"graceful stop exited {code}: {servers[-1].log()}"

    # the gateway really was killed mid-work
    assert len(accepted) >= 100, (len(accepted), kills)
    assert any(k.leased_by_killed > 0 for k in kills), kills
    assert any(k.undelivered > 0 for k in kills), kills

    # only what was in flight at a crash may have been sent twice: every repeat of a
    # delivery straddles a kill at which that delivery was leased, so repeats are bounded
    # by the leases the killed processes held
    sends = Counter(_header(r, "webhook-id") for r in _received(receiver))
    duplicates = sum(n - 1 for n in sends.values())
    print(f"sends={sum(sends.values())} deliveries={len(sends)} duplicates={duplicates}")
    unexplained = _unexplained_repeats(receiver, kills)
    assert not unexplained, f"sent again without a crash while leased: {unexplained[:10]}"
    assert duplicates <= sum(k.leased_by_killed for k in kills), (duplicates, kills)

    _check_file(db, accepted)
    assert time.monotonic() - started < 120
