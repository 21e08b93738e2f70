"""Noisy neighbours: 10 % of the endpoints hang; what happens to the healthy ones.

Per run: a fresh ``hookcast serve`` on a fresh SQLite file and 20 endpoints of one
project, each its own destination on one receiver. 18 are healthy (``/hook/<i>``, answered
at once). The other 2 (10 %) are the neighbours:

* ``all_healthy``: the neighbours answer at once too (``/other/<i>``);
* ``noisy``: the neighbours never answer (``/hang/<i>``): the receiver reads the request
  and holds the connection open until hookcast gives up after the endpoint's
  ``http_timeout`` (hookcast's default, 10 s, left as is) and retries later.

Events go round-robin to the 20 endpoints (``POST …/events``, one endpoint each), as fast
as accepted by ``--concurrency`` publishers, so 10 % of the events are for neighbours.
Both cases publish the same events and measure the same 18 healthy endpoints: deliveries
to them per second (first send → last healthy delivery) and their publish→delivered
latency. ``noisy_healthy_ratio`` (in ``results.json``) is the median healthy throughput
with hanging neighbours divided by the median with healthy neighbours: 1.0 means the
hanging endpoints cost the healthy ones nothing.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gateway import Gateway
from bench.harness import Metric, Options, Outcome, log
from bench.parts import Machine, Publisher, Receiver, percentile, start_profiler

NAME = "noisy"
TITLE = "Noisy neighbours: 10 % of the endpoints hang (SQLite)"

ENDPOINTS = 20
NEIGHBOURS = 2  # 10 %
HTTP_TIMEOUT_S = 10  # hookcast's default for a new endpoint, set explicitly to be sure

_PER_CASE: dict[str, Metric] = {
    "healthy_deliveries_per_s": Metric("deliveries/s to the 18 healthy endpoints", "/s"),
    "events_per_s": Metric("events accepted/s", "/s"),
    "healthy_p50_ms": Metric("healthy publish→delivered p50", "ms", 1),
    "healthy_p99_ms": Metric("healthy publish→delivered p99", "ms", 1),
    "neighbour_requests": Metric("requests the neighbours received", "", 0),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}
_PREFIX = {"all_healthy": "noisy_all_healthy_", "noisy": "noisy_"}

METRICS: dict[str, Metric] = {
    f"{prefix}{k}": m for prefix in _PREFIX.values() for k, m in _PER_CASE.items()
}


@dataclass(frozen=True)
class NoisyCase:
    name: str  # all_healthy | noisy
    events: int
    warmup: int
    concurrency: int

    @property
    def hang(self) -> bool:
        return self.name == "noisy"

    def describe(self) -> dict[str, Any]:
        who = (
            f"{NEIGHBOURS} hang (never answer; http_timeout {HTTP_TIMEOUT_S} s)"
            if self.hang
            else f"{NEIGHBOURS} answer at once too"
        )
        return {
            "summary": f"{self.events:,} events round-robin over {ENDPOINTS} endpoints "
            f"({ENDPOINTS - NEIGHBOURS} healthy, {who}), {self.concurrency} concurrent "
            f"publishers; {self.warmup:,} warm-up events first",
            "events": self.events,
            "endpoints": ENDPOINTS,
            "neighbours": NEIGHBOURS,
            "neighbours_hang": self.hang,
            "http_timeout_s": HTTP_TIMEOUT_S,
            "warmup": self.warmup,
        }

    def key(self, name: str) -> str:
        return _PREFIX[self.name] + name

    def metric_keys(self) -> list[str]:
        return [self.key(k) for k in _PER_CASE]

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            # a short shutdown grace: attempts still hanging at the end are not waited for;
            # the receiver (entered last) stops first, which ends them
            gateway = stack.enter_context(Gateway(env={"HOOKCAST_SHUTDOWN_GRACE_S": "1"}))
            receiver = stack.enter_context(Receiver(workdir))
            targets, secrets = [], {}
            for i in range(ENDPOINTS):
                healthy = i < ENDPOINTS - NEIGHBOURS
                prefix = "hook" if healthy else ("hang" if self.hang else "other")
                ep = gateway.create_endpoint(
                    receiver.hook_url(i, prefix), f"n{i}", http_timeout=HTTP_TIMEOUT_S
                )
                targets.append({"endpoint_id": ep["uid"]})
                secrets[f"/{prefix}/{i}"] = ep["secrets"][-1]["value"]
            receiver.set_secrets(secrets)
            publish = Publisher(gateway, targets, 1, self.concurrency, workdir)
            healthy_share = (ENDPOINTS - NEIGHBOURS) / ENDPOINTS
            if self.warmup:
                # warm up with healthy endpoints only, so no neighbour is hanging yet
                Publisher(
                    gateway, targets[: ENDPOINTS - NEIGHBOURS], 1, self.concurrency, workdir
                ).run_to_completion(receiver, self.warmup, rate=0.0)
                receiver.reset()
            profiler = (
                start_profiler(options, gateway.proc.pid if gateway.proc else None, workdir)
                if profile
                else None
            )
            machine0, cpu0, rx0 = Machine(), gateway.cpu_s(), receiver.cpu_s()
            pub = publish.publish(self.events, rate=0.0)
            expected = sum(1 for i in range(pub["sent"]) if i % ENDPOINTS < ENDPOINTS - NEIGHBOURS)
            if pub["accepted"] != pub["sent"]:
                expected = round(pub["accepted"] * healthy_share)
            receiver.wait_for(expected, hard_s=60 + expected / 200, alive=gateway)
            stats = receiver.results()
            cpu = gateway.cpu_s() - cpu0
            background = machine0.others_cores(cpu + receiver.cpu_s() - rx0 + pub["cpu_total_s"])
            outcome = Outcome()
            if profiler is not None:
                outcome.profile = profiler.finish()
            if background > 0.1:
                log(f"  note: {background:.2f} cores busy outside the benchmark")
            unique = int(stats["unique"])
            lat = sorted(stats["latency_ms"])
            window = max(1e-9, stats["last_arrival"] - pub["t_first_send"])
            values = {
                "healthy_deliveries_per_s": unique / window,
                "events_per_s": pub["events_per_s"],
                "healthy_p50_ms": percentile(lat, 50),
                "healthy_p99_ms": percentile(lat, 99),
                "neighbour_requests": float(stats["hung"] + stats["other"]),
                "background_cpu_cores": background,
            }
            outcome.metrics = {self.key(k): v for k, v in values.items()}
            outcome.problems = {
                "noisy_missing_healthy_deliveries": max(0, expected - unique),
                "noisy_publish_errors": sum(pub["errors"].values())
                + (self.events - pub["accepted"]),
                "noisy_bad_signatures": int(stats["bad_signatures"]),
                "noisy_no_signature_checked": 0 if stats["verified"] else 1,
            }
            outcome.counts = {
                "noisy_healthy_deliveries_expected": expected,
                "noisy_healthy_deliveries_received": unique,
                "noisy_hung_requests": int(stats["hung"]),
            }
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover


def cases(options: Options) -> list[NoisyCase]:
    quick = options.quick
    n = options.events or (200 if options.smoke else 2_000 if quick else 15_000)
    warmup = 0 if n < 1000 else (100 if quick else 1_000)
    c = options.concurrency
    return [NoisyCase("all_healthy", n, warmup, c), NoisyCase("noisy", n, warmup, c)]
