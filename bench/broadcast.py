"""Broadcast: one event to every endpoint of a project, 10,000 and 100,000 of them.

Per run: a fresh SQLite file; the project is created with the CLI (``hookcast project
create --config '{"broadcast_rate": R}'``), then N endpoints, each with a catch-all
subscription, are written straight into the file with ``executemany`` (creating 100,000
through the API would take minutes and measure the API instead), spread over 300 owners,
all pointing at one receiver with distinct paths ``/b/<i>`` and sharing one signing
secret. Then ``hookcast serve`` starts, a key with the broadcast grant is made through the
API, and one ``POST …/events/broadcast`` of a ~1 KiB event is timed until the receiver
has seen a delivery at every one of the N paths.

Two release rates, because hookcast paces broadcasts: the project default
(``broadcast_rate`` 5,000 deliveries/s, what an operator gets without configuring
anything) and ``broadcast_rate: 0`` (unlimited: how fast hookcast itself can go).

Measured per run: seconds from the POST to the last delivery; deliveries/s over that
window; seconds to the first delivery; the peak RSS of the server's processes (``VmHWM``,
summed over the API process and its worker processes) and their CPU seconds. Checked per
run: every endpoint got exactly one delivery (by distinct delivery id and count of
requests), sampled signatures verify, and the API's progress (``GET …/events/{id}`` →
``data.broadcast``) reports all N succeeded and the fan-out done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.parts import Machine, Receiver, pad_for, start_profiler

NAME = "broadcast"
TITLE = "Broadcast: one event to 10,000 and 100,000 endpoints (SQLite)"

DEFAULT_RATE = 5_000  # hookcast's default project broadcast_rate (deliveries/s released)
OWNERS = 300

_PER_CASE: dict[str, Metric] = {
    "s": Metric("POST → last delivery", "s", 2),
    "deliveries_per_s": Metric("deliveries/s over that window", "/s"),
    "first_delivery_ms": Metric("POST → first delivery", "ms", 1),
    "peak_rss_mb": Metric("server peak RSS (all its processes)", "MiB"),
    "server_cpu_s": Metric("server CPU", "s", 2),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}


def _label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _prefix(n: int, rate: int) -> str:
    return f"broadcast_{_label(n)}" + ("" if rate == DEFAULT_RATE else "_unlimited")


METRICS: dict[str, Metric] = {
    f"{_prefix(n, r)}_{k}": m
    for r in (DEFAULT_RATE, 0)
    for n in (10_000, 100_000)
    for k, m in _PER_CASE.items()
}
# the headline peak RSS: the largest broadcast at the default rate
METRICS["broadcast_peak_rss_mb"] = Metric("server peak RSS, 100k at the default rate", "MiB")


@dataclass(frozen=True)
class BroadcastCase:
    name: str
    endpoints: int
    rate: int  # the project's broadcast_rate (0 = unlimited)

    def describe(self) -> dict[str, Any]:
        pace = (
            f"default `broadcast_rate` {self.rate:,}/s"
            if self.rate
            else "`broadcast_rate: 0` (unlimited)"
        )
        return {
            "summary": f"one ~1 KiB event to {self.endpoints:,} endpoints ({OWNERS} owners, "
            f"one catch-all subscription each), {pace}",
            "endpoints": self.endpoints,
            "broadcast_rate": self.rate,
            "owners": OWNERS,
        }

    @property
    def prefix(self) -> str:
        return _prefix(self.endpoints, self.rate)

    def metric_keys(self) -> list[str]:
        keys = [f"{self.prefix}_{k}" for k in _PER_CASE]
        if self.endpoints == 100_000 and self.rate == DEFAULT_RATE:
            keys.append("broadcast_peak_rss_mb")
        return keys

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        n = self.endpoints
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            receiver = stack.enter_context(Receiver(workdir))
            gateway = Gateway(project_config={"broadcast_rate": self.rate})
            stack.callback(gateway.cleanup)
            gateway.prepare_offline()
            secret = "whsec_" + _b64(secrets.token_bytes(24))
            t_seed = time.monotonic()
            _seed(gateway.sqlite_path, gateway.project_id, receiver.base, n, secret)
            seed_s = time.monotonic() - t_seed
            receiver.set_secrets({"*": secret})
            gateway.start()
            key = gateway.broadcast_key()
            profiler = (
                start_profiler(options, gateway.proc.pid if gateway.proc else None, workdir)
                if profile
                else None
            )
            machine0, cpu0, rx0 = Machine(), gateway.cpu_s(), receiver.cpu_s()
            t0 = time.time()
            data = {"t": t0, "seq": 0, "pad": pad_for()}
            event = gateway.api(
                "POST", "/events/broadcast", {"event_type": "bench.broadcast", "data": data}, key
            )
            posted = time.time()
            # bounded: at the slowest plausible pace (300/s) plus start-up
            receiver.wait_for(n, hard_s=60 + n / 300, stall_s=30, alive=gateway)
            stats = receiver.stats()
            peak = gateway.peak_rss_mib()
            cpu = gateway.cpu_s() - cpu0
            background = machine0.others_cores(cpu + receiver.cpu_s() - rx0)
            outcome = Outcome()
            if profiler is not None:  # before the progress query, which is not the broadcast
                outcome.profile = profiler.finish()
            progress = _progress(gateway, key, event["uid"], n)
            if background > 0.1:
                log(f"  note: {background:.2f} cores busy outside the benchmark")
            unique = int(stats["unique"])
            elapsed = max(1e-9, stats["last_arrival"] - t0) if unique else 0.0
            values = {
                "s": elapsed,
                "deliveries_per_s": unique / elapsed if elapsed else 0.0,
                "first_delivery_ms": max(0.0, stats["first_arrival"] - t0) * 1000 if unique else 0,
                "peak_rss_mb": peak,
                "server_cpu_s": cpu,
                "background_cpu_cores": background,
            }
            outcome.metrics = {f"{self.prefix}_{k}": v for k, v in values.items()}
            if n == 100_000 and self.rate == DEFAULT_RATE:
                outcome.metrics["broadcast_peak_rss_mb"] = peak
            outcome.problems = {
                "broadcast_missing_deliveries": max(0, n - unique),
                "broadcast_duplicate_deliveries": int(stats["duplicates"]),
                "broadcast_bad_signatures": int(stats["bad_signatures"]),
                "broadcast_unverifiable_signatures": int(stats["unverifiable"]),
                "broadcast_no_signature_checked": 0 if stats["verified"] else 1,
                "broadcast_progress_mismatch": 0 if progress["ok"] else 1,
            }
            outcome.counts = {
                "broadcast_endpoints": n,
                "broadcast_deliveries_received": unique,
                "broadcast_signatures_verified": int(stats["verified"]),
            }
            if options.verbose:
                log(
                    f"  seeded {n:,} endpoints in {seed_s:.1f}s; POST took "
                    f"{(posted - t0) * 1000:.0f} ms; API progress: {progress['summary']}"
                )
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover


def _progress(gateway: Gateway, key: str, event_id: str, n: int) -> dict[str, Any]:
    """The API's view of the broadcast once the receiver has everything; bounded retries
    while the last completions are still being written."""
    data: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        data = gateway.api("GET", f"/events/{event_id}", key=key).get("broadcast") or {}
        if data.get("succeeded") == n and data.get("fanout_done"):
            break
        time.sleep(0.25)
    ok = data.get("succeeded") == n and bool(data.get("fanout_done"))
    shown = {k: data.get(k) for k in ("succeeded", "failed", "pending", "fanout_done")}
    return {"ok": ok, "summary": orjson.dumps(shown).decode()}


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulids(count: int) -> list[str]:
    """``count`` increasing ULIDs (hookcast's id format): now in ms, then a counter."""
    ms = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(8), "big") << 8
    out = []
    for i in range(count):
        value = (ms << 80) | (start + i)
        out.append("".join(_CROCKFORD[(value >> s) & 31] for s in range(125, -1, -5)))
    return out


def _seed(db: Path, project_id: str, base_url: str, n: int, secret: str) -> None:
    """N endpoints with a catch-all subscription each, written straight into the file.

    The columns are those of hookcast's schema (the others keep their defaults), as in
    ``tests/e2e/test_broadcast_crash.py``.
    """
    now = time.time_ns() // 1000
    secrets_json = orjson.dumps([{"id": "S", "value": secret, "created_at_us": now}]).decode()
    ids = _ulids(2 * n)
    endpoint_ids, sub_ids = ids[:n], ids[n:]
    endpoints = [
        (
            endpoint_ids[i],
            project_id,
            f"o{i % OWNERS}",
            f"b{i}",
            f"{base_url}/b/{i}",
            "active",
            secrets_json,
            1,
            10,
            "application/json",
            now,
            now,
        )
        for i in range(n)
    ]
    subs = [
        (
            sub_ids[i],
            project_id,
            endpoint_ids[i],
            "all",
            '{"event_types":["*"],"filter":{}}',
            "at_least_once",
            now,
            now,
        )
        for i in range(n)
    ]
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO endpoints (id, project_id, owner_id, name, url, status, secrets, "
                "advanced_signatures, http_timeout, content_type, created_at_us, updated_at_us) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                endpoints,
            )
            conn.executemany(
                "INSERT INTO subscriptions (id, project_id, endpoint_id, name, filter_config, "
                "delivery_mode, created_at_us, updated_at_us) VALUES (?,?,?,?,?,?,?,?)",
                subs,
            )
    except sqlite3.Error as exc:
        raise procs.BenchError(f"seeding {n:,} endpoints failed (schema changed?): {exc}") from exc
    finally:
        conn.close()


def _sizes(options: Options) -> list[int]:
    if options.smoke:
        return [500]
    return [10_000] if options.quick else [10_000, 100_000]


def cases(options: Options) -> list[BroadcastCase]:
    out = []
    for rate in (DEFAULT_RATE,) if options.quick else (DEFAULT_RATE, 0):
        for n in _sizes(options):
            suffix = "" if rate == DEFAULT_RATE else "_unlimited"
            out.append(BroadcastCase(f"{_label(n)}{suffix}", n, rate))
    return out


def skipped(options: Options) -> dict[str, str]:
    """The headline keys this mode does not measure."""
    if not (options.quick or options.smoke):
        return {}
    run = {k for c in cases(options) for k in c.metric_keys()}
    why = "not run with --smoke" if options.smoke else "not run with --quick (full suite only)"
    return {k: why for k in METRICS if k not in run}
