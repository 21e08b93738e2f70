"""Scale-out on PostgreSQL, end to end: 2 API processes (``serve --no-worker``) and 3
``hookcast worker`` processes on one database, under load from several publishers.

Mid-run one worker and one API process are killed with SIGKILL; a replacement worker
joins. Every event that got a 201 must reach the receiver, and only deliveries the killed
worker had leased (in flight) at the kill may arrive twice. The survivors stop cleanly.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import requests

from pg_support import fresh_database
from support import ADMIN_KEY, Behaviour, Receiver, free_port, new_project, wait_until

CONCURRENCY = 32  # per worker process: bounds what the killed worker had in flight
LEASE_MARGIN_S = 2
HTTP_TIMEOUT_S = 2  # per endpoint: a lease lasts this plus the margin
SECRET = "scaleout-pg-secret-0123456789"
#: endpoint paths and how long the receiver takes to answer each (so work is in flight)
PATHS = {"/ep0": 0.2, "/ep1": 0.1, "/ep2": 0.05, "/ep3": 0.0, "/ep4": 0.0}
PUBLISHERS = 4
MAX_PER_PUBLISHER = 2500
PUBLISH_FOR_S = 20.0  # a publisher gives up after this long even if never stopped
PACE_S = 0.004  # between one publisher's requests
WARMUP_S = 1.0  # more publishing, once every worker delivers, before the kills
AFTER_KILL_S = 2.0  # publishing to the surviving API after the kills
DRAIN_S = 40.0
PENDING = ("Scheduled", "Retry", "Processing")

ENV = {
    "HOOKCAST_ADMIN_API_KEY": ADMIN_KEY,
    "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
    "HOOKCAST_POLL_INTERVAL_S": "0.1",
    "HOOKCAST_LEASE_MARGIN_S": str(LEASE_MARGIN_S),
    "HOOKCAST_SHUTDOWN_GRACE_S": "2",
    "HOOKCAST_WORKER_CONCURRENCY": str(CONCURRENCY),
    "HOOKCAST_LOG_FORMAT": "text",
}


# ---------------------------------------------------------------- processes


class Proc:
    """One ``hookcast`` process on the PostgreSQL database: an API (``serve --no-worker``)
    or a ``worker``, which serves only ``/metrics`` (on a port of its own) for readiness
    and for its in-flight gauge."""

    def __init__(self, name: str, role: str, db_url: str, log_dir: Path) -> None:
        assert role in ("api", "worker"), role
        self.name = name
        self.role = role
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, **ENV, "HOOKCAST_DATABASE_URL": db_url}
        if role == "api":
            args = ["serve", "--no-worker", "--port", str(self.port)]
        else:
            args = ["worker"]
            env["HOOKCAST_METRICS_PORT"] = str(self.port)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __repr__(self) -> str:
        return f"{self.name}(pid={self.proc.pid}, port={self.port}, rc={self.proc.poll()})"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            return False
        path = "/health" if self.role == "api" else "/metrics"
        try:
            return requests.get(self.base + path, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of the worker's /metrics, or None when it does not answer."""
        try:
            text = requests.get(self.base + "/metrics", timeout=1).text
        except requests.RequestException:
            return None
        selector = re.escape(name + (f"{{{labels}}}" if labels else ""))
        m = re.search(rf"^{selector} ([0-9.eE+-]+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")[-tail:]
        except OSError as exc:
            return f"<no log: {exc}>"

    def kill(self) -> int | None:
        if self.alive():
            self.proc.kill()
        return self.wait(10)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.poll() is not None and not self._log.closed:
                self._log.close()


def _logs(procs: list[Proc]) -> str:
    return "".join(f"\n----- {p!r} log tail -----\n{p.log()}" for p in procs)


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database("hookcast_scaleout") as url:
        yield url


@pytest.fixture
def procs(db_url: str) -> Iterator[list[Proc]]:
    """Every process the test starts; whatever is still running at the end is killed
    (before the database is dropped)."""
    started: list[Proc] = []
    yield started
    for p in started:
        if p.alive():
            p.kill()
        else:
            p.wait(1)


def _start_all(procs: list[Proc], new: list[Proc], timeout: float = 30.0) -> None:
    procs.extend(new)
    ok = wait_until(lambda: all(p.ready() for p in new), timeout, step=0.1)
    assert ok, f"processes not ready after {timeout}s: {new}{_logs(new)}"


# ---------------------------------------------------------------- the project


def _setup(base: str, receiver: Receiver) -> tuple[str, str, list[str]]:
    pid, key = new_project(base, "scaleout")
    endpoints = []
    for path, delay in PATHS.items():
        receiver.behave(path, Behaviour(delay_s=delay))
        r = requests.post(
            f"{base}/api/v1/projects/{pid}/endpoints",
            json={
                "url": receiver.url + path,
                "name": path,
                "secret": SECRET,
                "http_timeout": HTTP_TIMEOUT_S,
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        endpoints.append(r.json()["data"]["uid"])
    return pid, key, endpoints


# ---------------------------------------------------------------- publishing


@dataclass
class Outcomes:
    #: seq -> (event uid, API base) for every publish answered 201
    accepted: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: publishes that raised (their API process killed mid-request): outcome unknown
    unknown: list[tuple[int, str, str]] = field(default_factory=list)
    #: publishes answered with anything but 201
    refused: list[tuple[int, str, int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


class Publishers:
    """PUBLISHERS threads POSTing events, alternating between the live API processes."""

    def __init__(self, apis: list[str], pid: str, key: str, endpoints: list[str]) -> None:
        self._apis = list(apis)
        self._pid = pid
        self._key = key
        self._endpoints = endpoints
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._stop = threading.Event()
        self.out = Outcomes()
        self._threads = [
            threading.Thread(target=self._run, name=f"publisher-{i}", daemon=True)
            for i in range(PUBLISHERS)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def drop(self, base: str) -> None:
        """Stop sending to *base* (its process is gone)."""
        with self._lock:
            self._apis.remove(base)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        assert not any(t.is_alive() for t in self._threads), "a publisher did not stop"

    def accepted(self) -> dict[int, tuple[str, str]]:
        with self._lock:
            return dict(self.out.accepted)

    def _run(self) -> None:
        try:
            self._publish()
        except BaseException as exc:
            with self._lock:
                self.out.errors.append(exc)

    def _publish(self) -> None:
        deadline = time.monotonic() + PUBLISH_FOR_S
        sessions: dict[str, requests.Session] = {}
        try:
            for _ in range(MAX_PER_PUBLISHER):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                with self._lock:
                    seq = next(self._seq)
                    base = self._apis[seq % len(self._apis)]
                session = sessions.get(base)
                if session is None:
                    session = sessions[base] = requests.Session()
                    session.headers["Authorization"] = f"Bearer {self._key}"
                body: dict[str, Any] = {
                    "endpoint_id": self._endpoints[seq % len(self._endpoints)],
                    "event_type": "scaleout.tick",
                    "data": {"seq": seq},
                }
                url = f"{base}/api/v1/projects/{self._pid}/events"
                try:
                    r = session.post(url, json=body, timeout=5)
                except requests.RequestException as exc:
                    with self._lock:
                        self.out.unknown.append((seq, base, type(exc).__name__))
                    self._stop.wait(0.02)
                    continue
                with self._lock:
                    if r.status_code == 201:
                        self.out.accepted[seq] = (r.json()["data"]["uid"], base)
                    else:
                        self.out.refused.append((seq, base, r.status_code, r.text[:200]))
                self._stop.wait(PACE_S)
        finally:
            for s in sessions.values():
                s.close()


# ---------------------------------------------------------------- what was received


@dataclass(frozen=True)
class Receipt:
    seq: int
    event_id: str
    delivery_id: str
    path: str
    at: float


def _header(headers: dict[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    raise KeyError(f"{name} missing: {sorted(headers)}")


def _receipts(receiver: Receiver) -> list[Receipt]:
    """Every request the receiver saw on the endpoint paths, its signature checked."""
    out = []
    for path in PATHS:
        for r in receiver.at(path):
            parts = dict(
                p.split("=", 1) for p in _header(r.headers, "X-Convoy-Signature").split(",")
            )
            expected = hmac.new(
                SECRET.encode(), parts["t"].encode() + b"," + r.body, hashlib.sha256
            ).hexdigest()
            assert hmac.compare_digest(parts["v1"], expected), f"bad signature on {r.path}"
            out.append(
                Receipt(
                    int(orjson.loads(r.body)["seq"]),
                    _header(r.headers, "X-Convoy-Event-ID"),
                    _header(r.headers, "webhook-id"),
                    r.path,
                    r.at,
                )
            )
    return out


def _received_seqs(receiver: Receiver) -> set[int]:
    seqs = set()
    for path in PATHS:
        for r in receiver.at(path):
            seqs.add(int(orjson.loads(r.body)["seq"]))
    return seqs


# ---------------------------------------------------------------- the database


def _statuses(db_url: str) -> Counter[str]:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
    return Counter({str(s): int(n) for s, n in rows})


def _leased(db_url: str) -> dict[str, str]:
    """Deliveries leased (Processing) right now: id -> lease token."""
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT id, lease_token FROM deliveries WHERE status = 'Processing'"
        ).fetchall()
    return {str(i): str(t) for i, t in rows}


def _owner(token: str) -> str:
    return token.rsplit("-", 1)[0]  # a worker's lease tokens are "<prefix>-<claim no>"


def _describe(db_url: str, event_ids: list[str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT e.id, d.id, d.status, d.attempts, d.due_at_us, d.lease_token, "
            "d.description FROM events e LEFT JOIN deliveries d ON d.event_id = e.id "
            "WHERE e.id = ANY(%s)",
            (event_ids,),
        ).fetchall()


def _all_deliveries(base: str, pid: str, key: str) -> list[dict[str, Any]]:
    """Every delivery of the project through the REST API, page by page."""
    out: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):
        params = {"perPage": 1000, **({"next_page_cursor": cursor} if cursor else {})}
        r = requests.get(
            f"{base}/api/v1/projects/{pid}/eventdeliveries",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        out.extend(data["content"])
        if not data["pagination"]["has_next_page"]:
            return out
        cursor = data["pagination"]["next_page_cursor"]
    raise AssertionError("more than 100 pages of deliveries")


# ---------------------------------------------------------------- the test


def _busiest(workers: list[Proc], timeout: float = 3.0) -> tuple[Proc, float]:
    """The worker with the most attempts in flight, once one has a few (polled briefly),
    to kill it mid-work."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [
            (w.metric("hookcast_deliveries_in_flight") or 0.0, i) for i, w in enumerate(workers)
        ]
        best, i = max(counts)
        if best >= 2 or time.monotonic() > deadline:
            return workers[i], best
        time.sleep(0.02)


def _killed_owner(db_url: str, leased_at_kill: dict[str, str]) -> tuple[str, Counter[str]]:
    """The lease-token owner of the killed worker: its leases stay put under the same token
    until they expire, while every live worker (its leases done in well under a second)
    shows up with new claims. Sampled for about a second after the kill."""
    old_tokens = set(leased_at_kill.values())
    live: set[str] = set()
    still: dict[str, str] = {}
    for _ in range(5):
        time.sleep(0.2)
        still = _leased(db_url)
        live |= {_owner(tok) for tok in still.values() if tok not in old_tokens}
    stuck = Counter(
        _owner(tok)
        for d, tok in leased_at_kill.items()
        if still.get(d) == tok and _owner(tok) not in live
    )
    return (stuck.most_common(1)[0][0] if stuck else ""), stuck


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_apis_three_workers_on_postgres_survive_kill_9(
    db_url: str, procs: list[Proc], receiver: Receiver, tmp_path: Path
) -> None:
    started = time.monotonic()

    def t() -> str:
        return f"{time.monotonic() - started:5.1f}s"

    apis = [Proc(f"api{i}", "api", db_url, tmp_path) for i in range(2)]
    workers = [Proc(f"worker{i}", "worker", db_url, tmp_path) for i in range(3)]
    _start_all(procs, apis + workers)
    print(f"{t()} up: {procs}")

    pid, key, endpoints = _setup(apis[0].base, receiver)
    publishers = Publishers([a.base for a in apis], pid, key, endpoints)
    publishers.start()
    try:
        # every worker takes part before anything is killed
        def all_working() -> bool:
            return all(
                (w.metric("hookcast_deliveries_total", 'outcome="success"') or 0) > 0
                for w in workers
            )

        assert wait_until(all_working, 15, step=0.1), f"not all workers delivering{_logs(procs)}"
        time.sleep(WARMUP_S)

        victim, in_flight = _busiest(workers)
        killed_at = time.time()
        victim.kill()
        leased_at_kill = _leased(db_url)
        dead_api = apis[1]
        dead_api.kill()
        publishers.drop(dead_api.base)
        accepted_at_kill = len(publishers.accepted())
        print(
            f"{t()} killed {victim.name} (in flight {in_flight}) and {dead_api.name}; "
            f"accepted so far {accepted_at_kill}; leased {len(leased_at_kill)}"
        )

        killed_owner, stuck = _killed_owner(db_url, leased_at_kill)
        killed_leases = {d for d, tok in leased_at_kill.items() if _owner(tok) == killed_owner}
        print(
            f"{t()} stuck leases by owner: {dict(stuck)}; the killed worker's: {len(killed_leases)}"
        )

        replacement = Proc("worker3", "worker", db_url, tmp_path)
        _start_all(procs, [replacement])
        time.sleep(max(0.0, AFTER_KILL_S - 1.0))
    finally:
        publishers.stop()
    out = publishers.out
    accepted = publishers.accepted()
    print(
        f"{t()} published: accepted={len(accepted)} unknown={len(out.unknown)} "
        f"refused={len(out.refused)} per API={Counter(b for _, b in accepted.values())}"
    )
    survivors = [p for p in procs if p not in (victim, dead_api)]
    assert all(p.alive() for p in survivors), f"a survivor died{_logs(procs)}"
    assert not out.errors, out.errors
    assert not out.refused, f"publishes refused: {out.refused[:10]}{_logs(apis)}"
    # only the killed API may leave a publish without an answer
    lost_answers = [u for u in out.unknown if u[1] != dead_api.base]
    assert not lost_answers, f"the surviving API failed to answer: {lost_answers[:10]}"
    assert len({uid for uid, _ in accepted.values()}) == len(accepted), "an event id reused"
    # both APIs really took part, and the survivor kept accepting after the kill
    per_api = Counter(b for _, b in accepted.values())
    assert per_api[dead_api.base] > 0 and per_api[apis[0].base] > 0, per_api
    assert len(accepted) > accepted_at_kill, "nothing accepted after the kills"

    # -------------------------------------------------------- drain
    def drained() -> bool:
        if not set(accepted) <= _received_seqs(receiver):
            return False
        statuses = _statuses(db_url)
        return not any(statuses[s] for s in PENDING)

    ok = wait_until(drained, DRAIN_S, step=0.25)
    print(f"{t()} drained={ok}: statuses {dict(_statuses(db_url))}")
    received = _receipts(receiver)
    seen = {r.seq for r in received}
    missing = sorted(set(accepted) - seen)
    assert not missing, (
        f"{len(missing)} accepted events never delivered: seqs {missing[:20]}; db: "
        f"{_describe(db_url, [accepted[s][0] for s in missing[:10]])}{_logs(procs)}"
    )
    assert ok, f"deliveries still pending after {DRAIN_S}s: {_statuses(db_url)}{_logs(procs)}"

    # each receipt carries its event's id; nothing arrived that was never published
    published = set(accepted) | {u[0] for u in out.unknown}
    for r in received:
        assert r.seq in published, r
        if r.seq in accepted:
            assert r.event_id == accepted[r.seq][0], (r, accepted[r.seq])

    # -------------------------------------------------------- duplicates
    sends = Counter(r.delivery_id for r in received)
    repeated = {d: n for d, n in sends.items() if n > 1}
    duplicates = sum(n - 1 for n in repeated.values())
    print(
        f"{t()} sends={len(received)} deliveries={len(sends)} duplicates={duplicates} "
        f"(the killed worker held {len(killed_leases)} leases)"
    )
    not_in_flight = sorted(set(repeated) - killed_leases)
    assert not not_in_flight, (
        f"sent more than once though not leased by the killed worker: "
        f"{[(d, leased_at_kill.get(d)) for d in not_in_flight[:10]]}; owner {killed_owner!r}"
    )
    assert duplicates <= len(killed_leases) and duplicates <= CONCURRENCY, (
        duplicates,
        len(killed_leases),
    )
    assert killed_leases, "the killed worker held no lease: it was not killed mid-work"
    redelivered = [r for r in received if r.delivery_id in killed_leases and r.at > killed_at]
    assert redelivered, "nothing the killed worker held was delivered after the kill"

    # -------------------------------------------------------- the records
    deliveries = _all_deliveries(apis[0].base, pid, key)
    by_event: dict[str, list[str]] = {}
    for d in deliveries:
        by_event.setdefault(d["event_id"], []).append(d["status"])
    wrong = {
        s: by_event.get(uid) for s, (uid, _) in accepted.items() if by_event.get(uid) != ["Success"]
    }
    assert not wrong, f"{len(wrong)} accepted events not one Success: {list(wrong.items())[:10]}"
    others = Counter(d["status"] for d in deliveries if d["status"] != "Success")
    assert not others, f"deliveries not Success: {others}"

    # -------------------------------------------------------- clean stop
    for p in survivors:
        p.proc.terminate()
    codes = {p.name: p.wait(15) for p in survivors}
    print(f"{t()} stopped: {codes}")
    assert all(c == 0 for c in codes.values()), f"unclean stop {codes}{_logs(survivors)}"
    assert time.monotonic() - started < 90
