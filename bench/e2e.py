"""End to end: events published over HTTP, stored, delivered signed to a local receiver.

Three cases, each on a fresh ``hookcast serve`` (the API process plus
``HOOKCAST_BENCH_WORKERS`` delivery worker processes, 1 by default) with a fresh SQLite
file, a fresh receiver process and a load-generator process; all of them share the
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

The PostgreSQL scenario (``bench/postgres.py``) runs the same cases on a fresh database,
and adds PostgreSQL's own CPU per delivery and, in a case whose database URL goes through the
counting proxy of ``bench/pgproxy.py`` (``pg_proxy``), client↔PostgreSQL round trips per
delivery (that case reports nothing else: the proxy slows it down).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import pgdb, procs
from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.parts import (
    Machine,
    Publisher,
    Receiver,
    percentile,
    service_cpu_s,
    start_profiler,
)
from bench.pgproxy import PgProxy, Tally
from bench.profiling import Profiler

NAME = "e2e"
TITLE = "End to end: HTTP publish → SQLite → signed delivery (one `hookcast serve`)"

PER_CASE: dict[str, Metric] = {
    "events_per_s": Metric("events accepted/s", "/s"),
    "deliveries_per_s": Metric("deliveries completed/s", "/s"),
    "p50_ms": Metric("publish→delivered p50", "ms", 1),
    "p95_ms": Metric("publish→delivered p95", "ms", 1),
    "p99_ms": Metric("publish→delivered p99", "ms", 1),
    "ack_p99_ms": Metric("publish request (201) p99", "ms", 1),
    "server_cpu_s": Metric("server CPU", "s", 2),
    "server_cpu_us_per_delivery": Metric("server CPU per delivery", "µs"),
    "server_peak_rss_mib": Metric("server peak RSS (all its processes)", "MiB"),
    "loadgen_cpu_s": Metric("load generator CPU", "s", 2),
    "receiver_cpu_s": Metric("receiver CPU", "s", 2),
    "db_cpu_s": Metric("PostgreSQL server CPU (all its processes)", "s", 2),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}
#: computed for every case, kept where the scenario's table has them (PostgreSQL's)
DB_KEYS = ("db_cpu_us_per_delivery",)
#: the only figure of a ``pg_proxy`` case
PROXY_KEYS = ("round_trips_per_delivery",)
FANOUT_KEYS = (
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
    **{f"e2e_{k}": m for k, m in PER_CASE.items()},
    **{f"e2e_fanout5_{k}": PER_CASE[k] for k in FANOUT_KEYS},
    **{f"e2e_{k}_at_2000": PER_CASE[k] for k in _RATE_KEYS},
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
    #: the scenario it belongs to: names its problem and count keys, and its metric table
    scenario: str = NAME
    #: "sqlite" (a fresh file) or "postgres" (a fresh database, see bench/pgdb.py)
    store: str = "sqlite"
    #: PostgreSQL through bench/pgproxy.py: counts round trips, reports only those
    pg_proxy: bool = False

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
        proxied = (
            "; through `bench/pgproxy.py`, which counts the round trips to PostgreSQL "
            "(only those are reported)"
            if self.pg_proxy
            else ""
        )
        return {
            "summary": f"{self.events:,} events x 1 KiB via {route} "
            f"({self.events * self.fanout:,} deliveries), {how}; "
            f"{self.warmup:,} warm-up events first{proxied}",
            "events": self.events,
            "fanout": self.fanout,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "warmup": self.warmup,
            "store": self.store,
            "pg_proxy": self.pg_proxy,
        }

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}{self.suffix}"

    def metric_keys(self) -> list[str]:
        table = _TABLES[self.scenario]
        names = PROXY_KEYS if self.pg_proxy else (*PER_CASE, *DB_KEYS)
        return [self.key(k) for k in names if self.key(k) in table]

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            receiver = stack.enter_context(Receiver(workdir))
            try:
                database = (
                    stack.enter_context(pgdb.fresh_database()) if self.store == "postgres" else None
                )
                proxy = None
                if self.pg_proxy and database is not None:
                    proxy = stack.enter_context(PgProxy(database))
                    database = proxy.url
                gateway = stack.enter_context(Gateway(database=database))
                targets = _setup_endpoints(gateway, receiver, self.fanout)
            except (pgdb.Unavailable, procs.BenchError) as exc:
                if self.store != "postgres":
                    raise
                # the PostgreSQL store may not exist yet: say so rather than fail the suite
                reason = str(exc).strip().splitlines()
                return Outcome(
                    unavailable=(reason[0] if reason else type(exc).__name__)[:300],
                    null_keys=tuple(self.metric_keys()),
                )
            path = "/events/fanout" if self.fanout > 1 else "/events"
            publish = Publisher(gateway, [targets], self.fanout, options.concurrency, workdir, path)
            if self.warmup:
                publish.run_to_completion(receiver, self.warmup, rate=0.0)
                receiver.reset()
            profiler = (
                start_profiler(options, gateway.proc.pid if gateway.proc else None, workdir)
                if profile
                else None
            )
            return self._measure(publish, receiver, gateway, profiler, proxy)
        raise AssertionError("unreachable")  # pragma: no cover

    def _measure(
        self,
        publish: Publisher,
        receiver: Receiver,
        gateway: Gateway,
        profiler: Profiler | None,
        proxy: PgProxy | None = None,
    ) -> Outcome:
        services = ("postgres",) if self.store == "postgres" else ()
        db0 = service_cpu_s(services) if services else 0.0
        trips0 = proxy.tally() if proxy else Tally()
        machine0, cpu0, rx_cpu0 = Machine(), gateway.cpu_s(), receiver.cpu_s()
        pub, stats = publish.run_to_completion(receiver, self.events, rate=self.rate)
        cpu, rx_cpu = gateway.cpu_s() - cpu0, receiver.cpu_s() - rx_cpu0
        trips = (proxy.tally() if proxy else Tally()) - trips0
        db_cpu = (service_cpu_s(services) - db0) if services else 0.0
        background = machine0.others_cores(cpu + rx_cpu + db_cpu + pub["cpu_total_s"])
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
            self.key("db_cpu_s"): db_cpu,
            self.key("db_cpu_us_per_delivery"): db_cpu / max(1, unique) * 1e6,
            self.key("round_trips_per_delivery"): trips.round_trips / max(1, unique),
        }
        kept = set(self.metric_keys())
        outcome.metrics = {k: v for k, v in outcome.metrics.items() if k in kept}
        tag = f"{self.scenario}_proxied" if self.pg_proxy else self.scenario
        outcome.problems = {
            f"{tag}_missing_deliveries": max(0, expected - unique),
            f"{tag}_publish_errors": sum(pub["errors"].values()) + (self.events - pub["accepted"]),
            f"{tag}_bad_signatures": stats["bad_signatures"],
            f"{tag}_unverifiable_signatures": stats["unverifiable"],
            f"{tag}_deliveries_without_timestamp": stats["no_timestamp"],
            f"{tag}_no_signature_checked": 0 if stats["verified"] else 1,
        }
        outcome.counts = {
            f"{tag}_events_accepted": pub["accepted"],
            f"{tag}_deliveries_expected": expected,
            f"{tag}_deliveries_received": unique,
            f"{tag}_duplicate_deliveries": stats["duplicates"],
            f"{tag}_signatures_verified": stats["verified"],
        }
        if proxy is not None:
            outcome.counts |= {
                f"{tag}_syncs": trips.syncs,
                f"{tag}_simple_queries": trips.queries,
                f"{tag}_flushes": trips.flushes,
            }
        return outcome


#: each scenario built on E2ECase registers its metric table here
_TABLES: dict[str, dict[str, Metric]] = {NAME: METRICS}


def register(scenario: str, table: dict[str, Metric]) -> None:
    _TABLES[scenario] = table


def cases(options: Options) -> list[E2ECase]:
    quick = options.quick
    # full sizes give ~7-10 s of delivery per case at hookcast's current speed (~2k/s);
    # raise them as it gets faster, so each case keeps running long enough to be steady
    n1 = options.events or (200 if options.smoke else 2_000 if quick else 15_000)
    n5 = max(1, n1 // 5) if options.events or options.smoke else (400 if quick else 4_000)
    rate_events = 2_000 * (2 if quick else 5)
    if options.events or options.smoke:
        rate_events = min(rate_events, n1)
    warmup = 0 if n1 < 1000 else (100 if quick else 1_000)
    c = options.concurrency
    out = [
        E2ECase("fanout1", "e2e_", "", 1, n1, warmup, c),
        E2ECase("fanout5", "e2e_fanout5_", "", 5, n5, warmup, c),
    ]
    if not options.smoke:  # the smoke run stays short: the open-loop case is left out
        out.append(E2ECase("rate2000", "e2e_", "_at_2000", 1, rate_events, warmup, c, rate=2_000.0))
    return out


def skipped(options: Options) -> dict[str, str]:
    if not options.smoke:
        return {}
    run = {k for case in cases(options) for k in case.metric_keys()}
    return {k: "not run with --smoke" for k in METRICS if k not in run}


def _setup_endpoints(gateway: Gateway, receiver: Receiver, fanout: int) -> dict[str, Any]:
    secrets: dict[str, str] = {}
    ids = []
    for i in range(fanout):
        url = receiver.hook_url(i)
        ep = gateway.create_endpoint(url, f"bench-{i}", owner_id=OWNER_ID if fanout > 1 else "")
        if fanout > 1:
            gateway.subscribe_all(ep["uid"], f"bench-{i}-all")
        secrets[f"/hook/{i}"] = ep["secrets"][-1]["value"]
        ids.append(ep["uid"])
    receiver.set_secrets(secrets)
    if fanout > 1:
        return {"owner_id": OWNER_ID}
    return {"endpoint_id": ids[0]}
