"""End to end: events published over HTTP, stored, delivered signed to a local receiver.

Three cases, each on a fresh ``hookcast serve`` (API + worker in one process) with a fresh
SQLite file, a fresh receiver process and a load-generator process; all of them share the
machine's cores, as they would in a one-box deployment:

* ``fanout1``: N events to one endpoint (``POST …/events``), as fast as they are accepted
  with ``--concurrency`` publishers;
* ``fanout5``: N/5 events to five endpoints of one owner (``POST …/events/fanout``);
* ``rate2000``: 2,000 events/s to one endpoint on a fixed schedule (open loop), for the
  latency a producer sees at a steady rate well below saturation.

Measured per run: events/s accepted (first send → last 201), deliveries/s completed
(first send → last delivery seen by the receiver), publish→delivered latency percentiles
(every delivery: receiver arrival - publish time embedded in the body), the server's CPU
seconds and peak RSS. Checked per run: every accepted event's deliveries arrived, no
signature sampled by the receiver failed, no publish failed.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import procs
from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.profiling import Profiler, find_py_spy

NAME = "e2e"
TITLE = "End to end: HTTP publish → SQLite → signed delivery (one `hookcast serve`)"

_PER_CASE: dict[str, Metric] = {
    "events_per_s": Metric("events accepted/s", "/s"),
    "deliveries_per_s": Metric("deliveries completed/s", "/s"),
    "p50_ms": Metric("publish→delivered p50", "ms", 1),
    "p95_ms": Metric("publish→delivered p95", "ms", 1),
    "p99_ms": Metric("publish→delivered p99", "ms", 1),
    "ack_p99_ms": Metric("publish request (201) p99", "ms", 1),
    "server_cpu_s": Metric("server CPU", "s", 2),
    "server_cpu_us_per_delivery": Metric("server CPU per delivery", "µs"),
    "server_peak_rss_mib": Metric("server peak RSS", "MiB"),
    "loadgen_cpu_s": Metric("load generator CPU", "s", 2),
    "receiver_cpu_s": Metric("receiver CPU", "s", 2),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}
_FANOUT_KEYS = (
    "events_per_s",
    "deliveries_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "server_cpu_us_per_delivery",
    "server_peak_rss_mib",
    "background_cpu_cores",
)
_RATE_KEYS = (
    "events_per_s",
    "deliveries_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "ack_p99_ms",
    "server_cpu_s",
    "background_cpu_cores",
)

METRICS: dict[str, Metric] = {
    **{f"e2e_{k}": m for k, m in _PER_CASE.items()},
    **{f"e2e_fanout5_{k}": _PER_CASE[k] for k in _FANOUT_KEYS},
    **{f"e2e_{k}_at_2000": _PER_CASE[k] for k in _RATE_KEYS},
}

OWNER_ID = "bench-owner"


@dataclass(frozen=True)
class E2ECase:
    name: str
    prefix: str  # metric keys are f"{prefix}{key}{suffix}"
    suffix: str
    fanout: int
    events: int
    warmup: int
    concurrency: int
    rate: float = 0.0

    def describe(self) -> dict[str, Any]:
        how = (
            f"at {self.rate:,.0f} events/s (open loop)"
            if self.rate
            else (f"as fast as accepted, {self.concurrency} concurrent publishers")
        )
        route = (
            "`/events/fanout` to 5 endpoints of one owner"
            if self.fanout > 1
            else ("`/events` to one endpoint")
        )
        return {
            "summary": f"{self.events:,} events x 1 KiB via {route} "
            f"({self.events * self.fanout:,} deliveries), {how}; "
            f"{self.warmup:,} warm-up events first",
            "events": self.events,
            "fanout": self.fanout,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "warmup": self.warmup,
        }

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}{self.suffix}"

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            receiver = stack.enter_context(_Receiver(workdir))
            gateway = stack.enter_context(Gateway())
            targets = _setup_endpoints(gateway, receiver, self.fanout)
            publish = _Publisher(gateway, targets, self.fanout, options.concurrency, workdir)
            if self.warmup:
                publish.run_to_completion(receiver, self.warmup, rate=0.0)
                receiver.reset()
            profiler = _start_profiler(options, gateway, workdir) if profile else None
            return self._measure(publish, receiver, gateway, profiler)
        raise AssertionError("unreachable")  # pragma: no cover

    def _measure(
        self, publish: _Publisher, receiver: _Receiver, gateway: Gateway, profiler: Profiler | None
    ) -> Outcome:
        machine0, cpu0, rx_cpu0 = _Machine(), gateway.cpu_s(), receiver.cpu_s()
        pub, stats = publish.run_to_completion(receiver, self.events, rate=self.rate)
        cpu, rx_cpu = gateway.cpu_s() - cpu0, receiver.cpu_s() - rx_cpu0
        background = machine0.others_cores(cpu + rx_cpu + pub["cpu_total_s"])
        if background > 0.1:
            log(f"  note: {background:.2f} cores busy outside the benchmark: figures perturbed")
        outcome = Outcome()
        if profiler is not None:
            outcome.profile = profiler.finish()
        expected = pub["accepted"] * self.fanout
        lat = sorted(stats["latency_ms"])
        unique = stats["unique"]
        window = max(1e-9, stats["last_arrival"] - pub["t_first_send"])
        outcome.metrics = {
            self.key("events_per_s"): pub["events_per_s"],
            self.key("deliveries_per_s"): unique / window,
            self.key("p50_ms"): percentile(lat, 50),
            self.key("p95_ms"): percentile(lat, 95),
            self.key("p99_ms"): percentile(lat, 99),
            self.key("ack_p99_ms"): pub["ack_p99_ms"],
            self.key("server_cpu_s"): cpu,
            self.key("server_cpu_us_per_delivery"): cpu / max(1, unique) * 1e6,
            self.key("server_peak_rss_mib"): gateway.peak_rss_mib(),
            self.key("loadgen_cpu_s"): pub["cpu_s"],
            self.key("receiver_cpu_s"): rx_cpu,
            self.key("background_cpu_cores"): background,
        }
        outcome.metrics = {k: v for k, v in outcome.metrics.items() if k in METRICS}
        outcome.problems = {
            "e2e_missing_deliveries": max(0, expected - unique),
            "e2e_publish_errors": sum(pub["errors"].values()) + (self.events - pub["accepted"]),
            "e2e_bad_signatures": stats["bad_signatures"],
            "e2e_unverifiable_signatures": stats["unverifiable"],
            "e2e_deliveries_without_timestamp": stats["no_timestamp"],
            "e2e_no_signature_checked": 0 if stats["verified"] else 1,
        }
        outcome.counts = {
            "e2e_events_accepted": pub["accepted"],
            "e2e_deliveries_expected": expected,
            "e2e_deliveries_received": unique,
            "e2e_duplicate_deliveries": stats["duplicates"],
            "e2e_signatures_verified": stats["verified"],
        }
        return outcome


def cases(options: Options) -> list[E2ECase]:
    quick = options.quick
    # full sizes give ~10 s of delivery per case at hookcast's current speed (~1.5k/s);
    # raise them as it gets faster, so each case keeps running long enough to be steady
    n1 = options.events or (2_000 if quick else 15_000)
    n5 = max(1, n1 // 5) if options.events else (400 if quick else 4_000)
    rate_events = 2_000 * (2 if quick else 5)
    if options.events:
        rate_events = min(rate_events, options.events)
    warmup = 0 if options.events and options.events < 1000 else (100 if quick else 1_000)
    c = options.concurrency
    return [
        E2ECase("fanout1", "e2e_", "", 1, n1, warmup, c),
        E2ECase("fanout5", "e2e_fanout5_", "", 5, n5, warmup, c),
        E2ECase("rate2000", "e2e_", "_at_2000", 1, rate_events, warmup, c, rate=2_000.0),
    ]


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# -- the pieces -------------------------------------------------------------------------------
class _Machine:
    """System-wide busy CPU since creation, to tell how much the rest of the box used."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.me = psutil.Process()
        self.me0 = sum(self.me.cpu_times()[:2])

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        fields = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user
        return float(sum(getattr(t, f, 0.0) for f in fields))

    def others_cores(self, ours_s: float) -> float:
        """Cores used by processes other than the benchmark's (``ours_s``) and this one."""
        elapsed = max(1e-9, time.monotonic() - self.t0)
        harness = sum(self.me.cpu_times()[:2]) - self.me0
        return max(0.0, (self._busy() - self.busy0 - ours_s - harness) / elapsed)


class _Receiver:
    def __init__(self, workdir: Path) -> None:
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "receiver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def __enter__(self) -> _Receiver:
        with self.log_path.open("wb") as log_file:
            self.proc = procs.spawn(
                [procs.PY, "-m", "bench.receiver", "--port", str(self.port)], stderr=log_file
            )
        self.ps = psutil.Process(self.proc.pid)
        procs.wait_until(
            procs.http_up(self.base + "/__bench/stats"),
            timeout_s=20,
            what="receiver",
            alive=[self.proc],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        procs.stop(self.proc)

    def hook_url(self, index: int) -> str:
        return f"{self.base}/hook/{index}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = procs.http_json(method, self.base + path, body, timeout=30)
        if status != 200:
            raise procs.BenchError(f"receiver {path}: {status}")
        return doc

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/__bench/stats")  # type: ignore[no-any-return]

    def results(self) -> dict[str, Any]:
        return self.call("GET", "/__bench/results")  # type: ignore[no-any-return]

    def reset(self) -> None:
        self.call("POST", "/__bench/reset")

    def cpu_s(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return float(t.user + t.system)


def _setup_endpoints(gateway: Gateway, receiver: _Receiver, fanout: int) -> dict[str, Any]:
    secrets: dict[str, str] = {}
    ids = []
    for i in range(fanout):
        url = receiver.hook_url(i)
        ep = gateway.create_endpoint(url, f"bench-{i}", owner_id=OWNER_ID if fanout > 1 else "")
        if fanout > 1:
            gateway.subscribe_all(ep["uid"], f"bench-{i}-all")
        secrets[f"/hook/{i}"] = ep["secrets"][-1]["value"]
        ids.append(ep["uid"])
    receiver.call("POST", "/__bench/secrets", secrets)
    if fanout > 1:
        return {"owner_id": OWNER_ID}
    return {"endpoint_id": ids[0]}


class _Publisher:
    """Runs the load generator process and waits, bounded, until its events are delivered."""

    def __init__(
        self, gateway: Gateway, target: dict[str, Any], fanout: int, concurrency: int, workdir: Path
    ) -> None:
        self.gateway = gateway
        self.target = target
        self.fanout = fanout
        self.concurrency = concurrency
        self.workdir = workdir
        self.url = gateway.project_base + ("/events/fanout" if fanout > 1 else "/events")

    def run_to_completion(
        self, receiver: _Receiver, events: int, *, rate: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # generous but finite: even at 200 events/s the publish phase ends by then
        publish_deadline_s = 60 + events / 200 + (events / rate if rate else 0)
        argv = [
            procs.PY,
            "-m",
            "bench.loadgen",
            "--url",
            self.url,
            "--key",
            self.gateway.api_key,
            "--target",
            orjson.dumps(self.target).decode(),
            "--events",
            str(events),
            "--concurrency",
            str(self.concurrency),
            "--rate",
            str(rate),
            "--deadline-s",
            str(publish_deadline_s),
        ]
        with (self.workdir / "loadgen.log").open("ab") as err:
            proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=err)
        try:
            pub = self._wait_publish(proc, publish_deadline_s + 40)
            self._wait_delivered(receiver, pub["accepted"] * self.fanout)
        finally:
            procs.stop(proc)
        return pub, receiver.results()

    def _wait_publish(self, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
        assert self.gateway.proc is not None
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if self.gateway.proc.poll() is not None:
                raise procs.BenchError("hookcast serve died:\n" + procs.tail(self.gateway.log_path))
            if time.monotonic() > deadline:
                raise procs.BenchError(f"load generator still running after {timeout_s:.0f}s")
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else b""
        if proc.returncode != 0 or not out.strip():
            why = procs.tail(self.workdir / "loadgen.log")
            raise procs.BenchError(f"load generator exited {proc.returncode}:\n{why}")
        return orjson.loads(out)  # type: ignore[no-any-return]

    def _wait_delivered(self, receiver: _Receiver, expected: int, stall_s: float = 20.0) -> None:
        """Until every delivery arrived, nothing arrived for ``stall_s``, or a hard deadline."""
        assert self.gateway.proc is not None
        hard = time.monotonic() + 60 + expected / 200
        seen, last_change = -1, time.monotonic()
        while time.monotonic() < hard:
            unique = receiver.stats()["unique"]
            if unique >= expected:
                return
            if unique != seen:
                seen, last_change = unique, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                break
            if self.gateway.proc.poll() is not None:
                raise procs.BenchError("hookcast serve died:\n" + procs.tail(self.gateway.log_path))
            time.sleep(0.1)
        log(f"  gave up waiting: {max(seen, 0):,} of {expected:,} deliveries arrived")


def _start_profiler(options: Options, gateway: Gateway, workdir: Path) -> Profiler | None:
    py_spy = find_py_spy(options.py_spy)
    if py_spy is None or gateway.proc is None:
        log("  py-spy not found (pip install py-spy, or pass --py-spy PATH): no profile")
        return None
    profiler = Profiler(py_spy, gateway.proc.pid, workdir / "profile.txt")
    time.sleep(0.5)  # let py-spy attach before the load starts
    return profiler
