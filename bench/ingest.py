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
* ``incoming``: as ``max``, but the events are third-party webhooks POSTed to an incoming
  project's source (``/ingest/{mask_id}``, no API key), each signed as GitHub signs
  (``X-Hub-Signature-256``) and verified, its type and idempotency key read from the
  headers, routed through a subscription naming the source (one delivery row each). The
  load generator is this module's own (``python -m bench.ingest``): ``bench.loadgen``
  speaks the publish API (201s), the ingest URL answers 200.

Measured per run: events/s accepted (first send → last 201); the publish call's latency
(send → 201) p50/p95/p99/p99.9/max; server CPU per event. Checked per run: no publish
failed, and every event that got its 201 is in the database, read from the SQLite file
by another connection while the server still runs (committed, not just queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.loadgen import EVENT_TYPE
from bench.parts import Machine, Publisher, percentile, start_profiler

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
    **{
        f"ingest_{k}_incoming": Metric(
            "incoming webhooks (signed, /ingest): "
            + _PER_CASE[k].label.replace("publish request (201)", "ingest request (200)"),
            m.unit,
            m.digits,
        )
        for k, m in _PER_CASE.items()
        if k in ("events_per_s", "ack_p50_ms", "ack_p99_ms", "server_cpu_us_per_event")
    },
}

#: the incoming case's source: GitHub's preset, this secret
GITHUB_SECRET = "bench-github-secret"

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
    incoming: bool = False

    def describe(self) -> dict[str, Any]:
        how = (
            f"at {self.rate:,.0f} events/s (open loop)"
            if self.rate
            else f"as fast as accepted, {self.concurrency} concurrent publishers"
        )
        checked = "; each validated against a JSON Schema" if self.validate else ""
        via = "`/events` to one endpoint"
        if self.incoming:
            via = "`/ingest/{mask}` (GitHub-signed, verified) to one source, one subscription"
        return {
            "summary": f"{self.events:,} events x 1 KiB via {via}, {how}; "
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
            if self.incoming:
                return self._run_incoming(gateway, workdir)
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

    def _run_incoming(self, gateway: Gateway, workdir: Path) -> Outcome:
        url = _incoming_source(gateway)
        if self.warmup:
            _incoming_load(url, self.warmup, self.concurrency, workdir, gateway)
        committed0 = _committed(gateway)
        machine0, cpu0 = Machine(), gateway.cpu_s()
        pub = _incoming_load(url, self.events, self.concurrency, workdir, gateway)
        cpu = gateway.cpu_s() - cpu0
        background = machine0.others_cores(cpu + pub["cpu_total_s"])
        committed = _committed(gateway) - committed0
        if background > 0.1:
            log(f"  note: {background:.2f} cores busy outside the benchmark")
        values = {
            "events_per_s": pub["events_per_s"],
            "ack_p50_ms": pub["ack_p50_ms"],
            "ack_p99_ms": pub["ack_p99_ms"],
            "server_cpu_us_per_event": cpu / max(1, pub["accepted"]) * 1e6,
        }
        return Outcome(
            metrics={self.key(k): v for k, v in values.items() if self.key(k) in METRICS},
            problems={
                "ingest_incoming_errors": sum(pub["errors"].values())
                + (self.events - pub["accepted"]),
                "ingest_incoming_acknowledged_not_committed": max(0, pub["accepted"] - committed),
            },
            counts={
                "ingest_incoming_accepted": pub["accepted"],
                "ingest_incoming_committed": committed,
            },
        )


def _incoming_source(gateway: Gateway) -> str:
    """An incoming project, a GitHub-preset source, an endpoint subscribed to it: the
    source's ingest URL."""
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    status, doc = procs.http_json(
        "POST",
        gateway.base + "/api/v1/projects",
        {"name": "bench-incoming", "type": "incoming"},
        admin,
        timeout=30,
    )
    if status != 201 or not doc:
        raise procs.BenchError(f"POST /api/v1/projects (incoming): {status} {doc}")
    project = doc["data"]["project"]["uid"]
    key = doc["data"]["api_key"]["key"]

    def api(path: str, body: dict[str, Any]) -> dict[str, Any]:
        base = f"{gateway.base}/api/v1/projects/{project}"
        st, got = procs.http_json(
            "POST", base + path, body, {"Authorization": f"Bearer {key}"}, timeout=30
        )
        if st != 201 or not got:
            raise procs.BenchError(f"POST {path}: {st} {got}")
        return got["data"]  # type: ignore[no-any-return]

    source = api(
        "/sources",
        {
            "name": "github",
            "type": "http",
            "provider": "github",
            "verifier": {"type": "hmac", "hmac": {"secret": GITHUB_SECRET}},
            "idempotency_keys": ["request.header.X-GitHub-Delivery"],
            "event_type_location": "request.header.X-GitHub-Event",
        },
    )
    endpoint = api("/endpoints", {"url": DEAD_URL, "name": "incoming"})
    api("/subscriptions", {"name": "s", "endpoint_id": endpoint["uid"], "source_id": source["uid"]})
    return str(source["url"])


def _incoming_load(
    url: str, events: int, concurrency: int, workdir: Path, gateway: Gateway
) -> dict[str, Any]:
    """Run this module's incoming load generator (its own process), bounded."""
    deadline_s = 60 + events / 200
    argv = [procs.PY, "-m", "bench.ingest", "--url", url, "--events", str(events)]
    argv += ["--concurrency", str(concurrency), "--deadline-s", str(deadline_s)]
    with (workdir / "incoming-loadgen.log").open("ab") as err:
        proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=err)
    try:
        limit = time.monotonic() + deadline_s + 40
        while proc.poll() is None:
            gateway.check_alive()
            if time.monotonic() > limit:
                raise procs.BenchError("incoming load generator still running past its deadline")
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else b""
    finally:
        procs.stop(proc)
    if proc.returncode != 0 or not out.strip():
        why = procs.tail(workdir / "incoming-loadgen.log")
        raise procs.BenchError(f"incoming load generator exited {proc.returncode}:\n{why}")
    pub: dict[str, Any] = orjson.loads(out)
    if pub["errors"]:
        log(f"  incoming errors: {pub['errors']}")
    return pub


async def _send_incoming(args: argparse.Namespace) -> dict[str, Any]:
    """Closed loop: ``--concurrency`` senders, each awaiting its 200 before the next
    webhook; each body ~1 KiB of JSON, signed as GitHub does, a unique delivery id."""
    import aiohttp

    pad = "x" * 960
    secret = GITHUB_SECRET.encode()
    state = {"next": 0, "accepted": 0, "last": 0.0}
    ack_ms: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0, cpu0 = time.time(), time.process_time()
        deadline = t0 + args.deadline_s

        async def sender() -> None:
            while state["next"] < args.events and time.time() < deadline:
                i = state["next"]
                state["next"] = i + 1
                body = orjson.dumps({"action": "opened", "seq": i, "t": time.time(), "pad": pad})
                signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": f"bench-{t0}-{i}",
                    "X-Hub-Signature-256": f"sha256={signature}",
                }
                sent = time.time()
                try:
                    async with session.post(args.url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if status == 200:
                    state["accepted"] += 1
                    state["last"] = time.time()
                    ack_ms.append((state["last"] - sent) * 1000.0)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        await asyncio.wait_for(
            asyncio.gather(*(sender() for _ in range(args.concurrency))),
            timeout=args.deadline_s + 30,
        )
    ack_ms.sort()
    return {
        "accepted": state["accepted"],
        "errors": errors,
        "events_per_s": state["accepted"] / max(1e-9, state["last"] - t0),
        "ack_p50_ms": percentile(ack_ms, 50),
        "ack_p99_ms": percentile(ack_ms, 99),
        "cpu_s": time.process_time() - cpu0,
        "cpu_total_s": time.process_time(),
    }


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
        out.append(IngestCase("incoming", "_incoming", n, warmup, c, incoming=True))
    return out


def skipped(options: Options) -> dict[str, str]:
    if not options.smoke:
        return {}
    why = "not measured with --smoke (the max case only)"
    return {k: why for k in METRICS if k.endswith(("_at_2000", "_schema", "_incoming"))}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.ingest --url URL --events N``: the incoming case's load
    generator; prints one JSON document on stdout."""
    p = argparse.ArgumentParser(prog="python -m bench.ingest")
    p.add_argument("--url", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--deadline-s", type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_send_incoming(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
