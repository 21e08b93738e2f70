"""Ingest: events accepted and durably committed per second, and the publish call's latency.

One ``hookcast serve --no-worker`` (the API process alone, so ingest is measured without
delivery competing for the cores) on a fresh SQLite file with hookcast's default
durability (WAL, ``HOOKCAST_SQLITE_SYNCHRONOUS=FULL``: every group commit is synced before
the 201s it covers are sent). Events go to one endpoint via ``POST …/events``; each
accepted event also writes its delivery row, which no worker picks up here.

* ``max``: N events as fast as accepted by ``--concurrency`` publishers (closed loop);
* ``rate2000``: a fixed 2,000 events/s (open loop), for the latency below saturation;
* ``schema``: as ``max``, with the project's ``validate_event_schemas`` on and a JSON
  Schema for the events' type in the catalog, so every publish is validated: its
  figures beside ``max``'s give what validation costs.

Measured per run: events/s accepted (first send → last 201); the publish call's latency
(send → 201) p50/p95/p99/p99.9/max; server CPU per event. Checked per run: no publish
failed, and every event that got its 201 is in the database, read from the SQLite file
by another connection while the server still runs (committed, not just queued).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.loadgen import EVENT_TYPE
from bench.parts import Machine, Publisher, start_profiler

NAME = "ingest"
TITLE = "Ingest: HTTP publish → durable SQLite commit (API process alone)"

_PER_CASE: dict[str, Metric] = {
    "events_per_s": Metric("events accepted and committed/s", "/s"),
    "ack_p50_ms": Metric("publish request (201) p50", "ms", 1),
    "ack_p95_ms": Metric("publish request (201) p95", "ms", 1),
    "ack_p99_ms": Metric("publish request (201) p99", "ms", 1),
    "ack_p999_ms": Metric("publish request (201) p99.9", "ms", 1),
    "ack_max_ms": Metric("publish request (201) max", "ms", 1),
    "server_cpu_us_per_event": Metric("server CPU per event", "µs"),
    "server_peak_rss_mib": Metric("server peak RSS", "MiB"),
    "loadgen_cpu_s": Metric("load generator CPU", "s", 2),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}

METRICS: dict[str, Metric] = {
    **{f"ingest_{k}": m for k, m in _PER_CASE.items()},
    **{
        f"ingest_{k}_at_2000": _PER_CASE[k]
        for k in ("events_per_s", "ack_p50_ms", "ack_p95_ms", "ack_p99_ms", "ack_max_ms")
    },
    **{
        f"ingest_{k}_schema": Metric(
            f"with schema validation: {_PER_CASE[k].label}", m.unit, m.digits
        )
        for k, m in _PER_CASE.items()
        if k in ("events_per_s", "ack_p99_ms", "server_cpu_us_per_event")
    },
}

#: the catalog entry of the load generator's events (bench/loadgen.py: t, seq, pad)
SCHEMA = {
    "type": "object",
    "required": ["t", "seq", "pad"],
    "properties": {
        "t": {"type": "number"},
        "seq": {"type": "integer", "minimum": 0},
        "pad": {"type": "string", "maxLength": 65536},
    },
}

DEAD_URL = "http://127.0.0.1:9/never-called"  # no worker runs: nothing is delivered


@dataclass(frozen=True)
class IngestCase:
    name: str
    suffix: str
    events: int
    warmup: int
    concurrency: int
    rate: float = 0.0
    validate: bool = False

    def describe(self) -> dict[str, Any]:
        how = (
            f"at {self.rate:,.0f} events/s (open loop)"
            if self.rate
            else f"as fast as accepted, {self.concurrency} concurrent publishers"
        )
        checked = "; each validated against a JSON Schema" if self.validate else ""
        return {
            "summary": f"{self.events:,} events x 1 KiB via `/events` to one endpoint, {how}; "
            f"`hookcast serve --no-worker`; {self.warmup:,} warm-up events first{checked}",
            "events": self.events,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "warmup": self.warmup,
        }

    def key(self, name: str) -> str:
        return f"ingest_{name}{self.suffix}"

    def metric_keys(self) -> list[str]:
        return [self.key(k) for k in _PER_CASE if self.key(k) in METRICS]

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            gateway = stack.enter_context(Gateway(workers=0, serve_args=["--no-worker"]))
            endpoint = gateway.create_endpoint(DEAD_URL, "ingest")
            if self.validate:
                gateway.api("PUT", "", {"config": {"validate_event_schemas": True}})
                gateway.api("POST", "/event-types", {"name": EVENT_TYPE, "json_schema": SCHEMA})
            publish = Publisher(
                gateway, [{"endpoint_id": endpoint["uid"]}], 1, self.concurrency, workdir
            )
            if self.warmup:
                publish.publish(self.warmup, rate=0.0)
            committed0 = _committed(gateway)
            profiler = (
                start_profiler(options, gateway.proc.pid if gateway.proc else None, workdir)
                if profile
                else None
            )
            machine0, cpu0 = Machine(), gateway.cpu_s()
            pub = publish.publish(self.events, rate=self.rate)
            cpu = gateway.cpu_s() - cpu0
            background = machine0.others_cores(cpu + pub["cpu_total_s"])
            committed = _committed(gateway) - committed0
            if background > 0.1:
                log(f"  note: {background:.2f} cores busy outside the benchmark")
            outcome = Outcome()
            if profiler is not None:
                outcome.profile = profiler.finish()
            values = {
                "events_per_s": pub["events_per_s"],
                "ack_p50_ms": pub["ack_p50_ms"],
                "ack_p95_ms": pub["ack_p95_ms"],
                "ack_p99_ms": pub["ack_p99_ms"],
                "ack_p999_ms": pub["ack_p999_ms"],
                "ack_max_ms": pub["ack_max_ms"],
                "server_cpu_us_per_event": cpu / max(1, pub["accepted"]) * 1e6,
                "server_peak_rss_mib": gateway.peak_rss_mib(),
                "loadgen_cpu_s": pub["cpu_s"],
                "background_cpu_cores": background,
            }
            outcome.metrics = {self.key(k): v for k, v in values.items() if self.key(k) in METRICS}
            outcome.problems = {
                "ingest_publish_errors": sum(pub["errors"].values())
                + (self.events - pub["accepted"]),
                "ingest_acknowledged_not_committed": max(0, pub["accepted"] - committed),
            }
            outcome.counts = {
                "ingest_events_accepted": pub["accepted"],
                "ingest_events_committed": committed,
            }
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover


def _committed(gateway: Gateway) -> int:
    """Events in the database, read by a separate connection (so: committed)."""
    conn = sqlite3.connect(f"file:{gateway.sqlite_path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def cases(options: Options) -> list[IngestCase]:
    quick = options.quick
    n = options.events or (300 if options.smoke else 3_000 if quick else 20_000)
    rate_events = min(n, 4_000 if quick else 10_000)
    warmup = 0 if n < 1000 else (100 if quick else 1_000)
    c = options.concurrency
    out = [IngestCase("max", "", n, warmup, c)]
    if not options.smoke:
        out.append(IngestCase("rate2000", "_at_2000", rate_events, warmup, c, rate=2_000.0))
        out.append(IngestCase("schema", "_schema", n, warmup, c, validate=True))
    return out
