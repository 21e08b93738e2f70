"""Outbox lag: from the application's commit to the event stored in hookcast.

Per run: a fresh ``hookcast serve --no-worker`` (SQLite; no delivery, so only the path
being measured runs), a fresh PostgreSQL application database with ``hookcast outbox
install``, and one ``hookcast relay`` process. The bench process is the application: 4
asyncpg connections commit one outbox event per transaction (``hookcast.outbox.asyncpg``),
paced together at ``RATE`` events/s for ``SECONDS`` s, noting the wall-clock time each
``COMMIT`` returned. Then it waits (bounded) until the outbox is empty and reads every
event back from hookcast's REST API by its ``outbox:<row id>`` idempotency key.

The lag of an event is hookcast's ``created_at`` (the time hookcast took the relay's
publish; the 201, and so the row's delete, follows once its group commit is durable,
a few ms later) minus the application's commit time; both clocks are this machine's.
Checked: every committed event is in hookcast exactly once (``outbox_missing``,
``outbox_duplicates``) and the outbox ends empty with no failed row.

``BENCH_OUTBOX_RELAY_ARGS`` adds flags to the relay (e.g. ``--lanes 1 --concurrency 32``)
to compare its settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import procs
from bench.gateway import HOOKCAST, Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.machine import pg_admin_url
from bench.parts import percentile

NAME = "outbox"
TITLE = "Transactional outbox: commit → stored in hookcast, through `hookcast relay`"

RATE = 1_000
SECONDS = 10.0
WRITERS = 4

METRICS: dict[str, Metric] = {
    "outbox_lag_p50_ms": Metric("commit → stored p50", "ms", 1),
    "outbox_lag_p99_ms": Metric("commit → stored p99", "ms", 1),
    "outbox_lag_max_ms": Metric("commit → stored max", "ms", 1),
    "outbox_committed_per_s": Metric("events committed/s (the offered load)", "/s"),
    "outbox_relay_cpu_us_per_event": Metric("relay CPU per event", "µs"),
}


@dataclass(frozen=True)
class OutboxCase:
    name: str
    rate: int
    seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "summary": f"{self.rate:,} events/s for {self.seconds:g} s, one event per "
            f"transaction over {WRITERS} connections, one relay, serve --no-worker (SQLite)",
            "rate": self.rate,
            "seconds": self.seconds,
            "writers": WRITERS,
        }

    def metric_keys(self) -> list[str]:
        return list(METRICS)

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        try:
            import asyncpg  # noqa: F401 - a dependency of hookcast
            import psycopg
        except ImportError as exc:  # pragma: no cover
            return Outcome(unavailable=f"a driver is missing: {exc}", null_keys=tuple(METRICS))
        admin = pg_admin_url()
        name = "hookcast_bench_outbox_" + secrets.token_hex(5)
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as exc:
            return Outcome(unavailable=f"PostgreSQL is not usable: {exc}", null_keys=tuple(METRICS))
        parts = urlsplit(admin)
        app_url = urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
        try:
            return self._measure(app_url)
        finally:
            with (
                contextlib.suppress(psycopg.Error),
                psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn,
            ):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _measure(self, app_url: str) -> Outcome:
        import psutil

        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hc-outbox-")))
            gateway = stack.enter_context(Gateway(workers=0, serve_args=["--no-worker"]))
            endpoint = gateway.create_endpoint("http://127.0.0.1:9/never", "outbox")["uid"]
            installed = procs.spawn(
                [*HOOKCAST, "outbox", "install", "--database-url", app_url], stdout=None
            )
            if installed.wait(60) != 0:
                raise procs.BenchError("hookcast outbox install failed")
            relay_log = workdir / "relay.log"
            with relay_log.open("wb") as f:
                relay = procs.spawn(
                    [
                        *HOOKCAST,
                        *("relay", "--source-url", app_url, "--url", gateway.base),
                        *("--key", gateway.api_key, "--project", gateway.project_id),
                        *os.environ.get("BENCH_OUTBOX_RELAY_ARGS", "").split(),
                    ],
                    env={"HOOKCAST_LOG_LEVEL": "WARNING"},
                    stderr=f,
                )
            stack.callback(procs.stop, relay)
            ps = psutil.Process(relay.pid)
            # the relay's start-up (imports, connections) is not measured: wait for its LISTEN
            procs.wait_until(
                lambda: _listening(app_url),
                timeout_s=60,
                what="the relay's LISTEN",
                alive=[relay],
            )
            cpu0 = _cpu(ps)
            committed, elapsed = asyncio.run(_write(app_url, endpoint, self.rate, self.seconds))
            procs.wait_until(
                lambda: _left(app_url) == 0,
                timeout_s=60 + len(committed) / 200,
                what="the outbox to drain",
                alive=[relay],
            )
            cpu = _cpu(ps) - cpu0
            failed = _left(app_url, "failed")
            stored = asyncio.run(_stored(gateway, len(committed)))
        lags, missing, duplicates = _lags(committed, stored)
        lags.sort()
        outcome = Outcome()
        outcome.metrics = {
            "outbox_lag_p50_ms": percentile(lags, 50),
            "outbox_lag_p99_ms": percentile(lags, 99),
            "outbox_lag_max_ms": lags[-1] if lags else 0.0,
            "outbox_committed_per_s": len(committed) / max(elapsed, 1e-9),
            "outbox_relay_cpu_us_per_event": cpu * 1e6 / max(len(committed), 1),
        }
        outcome.problems = {
            "outbox_missing": missing,
            "outbox_duplicates": duplicates,
            "outbox_failed_rows": failed,
        }
        outcome.counts = {"outbox_committed": len(committed), "outbox_stored": len(stored)}
        if missing or duplicates or failed:
            log(f"  outbox: {missing} missing, {duplicates} duplicates, {failed} failed rows")
        return outcome


def _cpu(ps: Any) -> float:
    t = ps.cpu_times()
    return float(t.user + t.system)


async def _write(
    url: str, endpoint_id: str, rate: int, seconds: float
) -> tuple[dict[str, float], float]:
    """Commit ``rate * seconds`` events at *rate*/s; {row id: wall time of its commit}."""
    import asyncpg

    from hookcast.domain.outbox import OutboxEvent
    from hookcast.outbox.asyncpg import publish

    total = int(rate * seconds)
    committed: dict[str, float] = {}
    start = time.monotonic() + 0.05
    data = {"pad": "x" * 200}

    async def writer(k: int) -> None:
        conn = await asyncpg.connect(url)
        try:
            for i in range(k, total, WRITERS):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with conn.transaction():
                    row_id = await publish(
                        conn, OutboxEvent("bench.outbox", {**data, "i": i}, endpoint_id=endpoint_id)
                    )
                committed[row_id] = time.time()
        finally:
            await conn.close()

    await asyncio.gather(*(writer(k) for k in range(WRITERS)))
    return committed, time.monotonic() - start


def _listening(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'hookcast-relay-listen' AND query LIKE 'LISTEN%%'"
        ).fetchone()
    return bool(row and row[0])


def _left(url: str, status: str = "") -> int:
    import psycopg

    where = "WHERE status = %s" if status else ""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM hookcast_outbox {where}", [status] if status else []
        ).fetchone()
    return int(row[0]) if row else 0


async def _stored(gateway: Gateway, expected: int) -> list[dict[str, Any]]:
    from hookcast.apiclient import ApiClient, list_all, project_path

    async with ApiClient(gateway.base, gateway.api_key, timeout_s=60) as client:
        items, _ = await list_all(
            client, project_path(gateway.project_id, "events"), limit=expected * 2 + 100
        )
    return items


def _lags(
    committed: dict[str, float], stored: list[dict[str, Any]]
) -> tuple[list[float], int, int]:
    seen: dict[str, int] = {}
    lags: list[float] = []
    for e in stored:
        key = str(e.get("idempotency_key", ""))
        if e.get("is_duplicate_event") or not key.startswith("outbox:"):
            continue
        seen[key] = seen.get(key, 0) + 1
        at = committed.get(key.removeprefix("outbox:"))
        if at is not None and seen[key] == 1:
            stamp = datetime.fromisoformat(str(e["created_at"]).replace("Z", "+00:00"))
            lags.append((stamp.timestamp() - at) * 1000)
    missing = sum(1 for row_id in committed if f"outbox:{row_id}" not in seen)
    duplicates = sum(n - 1 for n in seen.values())
    return lags, missing, duplicates


def cases(options: Options) -> list[OutboxCase]:
    if options.smoke:
        return [OutboxCase("outbox", 200, 1.0)]
    seconds = 3.0 if options.quick else SECONDS
    if options.events:
        seconds = max(options.events / RATE, 0.5)
    return [OutboxCase("outbox", RATE, seconds)]
