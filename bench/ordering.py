"""Ordered delivery per key (docs/ordering.md): what one delivery at a time per key costs.

One case per store (SQLite, PostgreSQL). Each run does two phases, one after the other on
a fresh gateway each, with the same events: 4 endpoints of one project on one receiver,
events round-robin over 1,000 ordering keys (key *i* always to endpoint *i* mod 4, so 250
keys each), published as fast as ``--concurrency`` publishers get them accepted.

* ``unordered``: the endpoints' ``ordering`` is ``none`` (the keys are sent but ignored);
* ``ordered``: ``per_key``: a key's next delivery is claimed only once its previous one
  has ended.

Measured per phase: deliveries per second (first send → last delivery) and the
publish→delivered latency; ``ordering_<store>_ratio`` is the ordered throughput divided
by the unordered one in the same run (the aim: at least 0.5). Checked: every accepted
event delivered, no bad signature, no failed publish.
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
from bench.parts import Publisher, Receiver, percentile

NAME = "ordering"
TITLE = "Ordered delivery: 1,000 ordering keys vs none, same run"

ENDPOINTS = 4
KEYS = 1_000
PHASES = ("unordered", "ordered")
STORES = ("sqlite", "postgres")

_PER_PHASE: dict[str, Metric] = {
    "deliveries_per_s": Metric("deliveries/s", "/s"),
    "p50_ms": Metric("publish→delivered p50", "ms", 1),
    "p99_ms": Metric("publish→delivered p99", "ms", 1),
}


def _key(store: str, name: str) -> str:
    return f"ordering_{store}_{name}"


METRICS: dict[str, Metric] = {
    **{
        _key(store, f"{phase}_{k}"): m
        for store in STORES
        for phase in PHASES
        for k, m in _PER_PHASE.items()
    },
    **{_key(store, "ratio"): Metric("ordered ÷ unordered deliveries/s", "", 2) for store in STORES},
}


@dataclass(frozen=True)
class OrderingCase:
    name: str  # the store: sqlite | postgres
    events: int
    concurrency: int

    def describe(self) -> dict[str, Any]:
        return {
            "summary": f"{self.events:,} events over {KEYS:,} ordering keys and {ENDPOINTS} "
            f"endpoints ({self.name}), {self.concurrency} concurrent publishers; the same "
            "events unordered, then ordered per key, each phase on a fresh gateway",
            "events": self.events,
            "keys": KEYS,
            "endpoints": ENDPOINTS,
            "store": self.name,
        }

    def metric_keys(self) -> list[str]:
        return [k for k in METRICS if k.startswith(f"ordering_{self.name}_")]

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        outcome = Outcome()
        rates = {}
        for phase in PHASES:
            try:
                values, problems, counts = self._phase(phase)
            except (pgdb.Unavailable, procs.BenchError) as exc:
                outcome.unavailable = str(exc)
                outcome.null_keys = tuple(self.metric_keys())
                return outcome
            rates[phase] = values["deliveries_per_s"]
            outcome.metrics.update({_key(self.name, f"{phase}_{k}"): v for k, v in values.items()})
            for k, v in problems.items():
                key = _key(self.name, k)
                outcome.problems[key] = outcome.problems.get(key, 0) + v
            outcome.counts.update({_key(self.name, f"{phase}_{k}"): v for k, v in counts.items()})
        outcome.metrics[_key(self.name, "ratio")] = rates["ordered"] / max(rates["unordered"], 1e-9)
        return outcome

    def _phase(self, phase: str) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
        with contextlib.ExitStack() as stack:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            database = (
                stack.enter_context(pgdb.fresh_database()) if self.name == "postgres" else None
            )
            gateway = stack.enter_context(Gateway(database=database))
            receiver = stack.enter_context(Receiver(workdir))
            endpoints, secrets = [], {}
            for i in range(ENDPOINTS):
                ep = gateway.create_endpoint(
                    receiver.hook_url(i),
                    f"o{i}",
                    ordering="per_key" if phase == "ordered" else "none",
                )
                endpoints.append(ep["uid"])
                secrets[f"/hook/{i}"] = ep["secrets"][-1]["value"]
            receiver.set_secrets(secrets)
            targets = [
                {"endpoint_id": endpoints[i % ENDPOINTS], "ordering_key": f"key-{i}"}
                for i in range(KEYS)
            ]
            pub = Publisher(gateway, targets, 1, self.concurrency, workdir).publish(
                self.events, rate=0.0
            )
            expected = pub["accepted"]
            receiver.wait_for(expected, hard_s=60 + expected / 100, alive=gateway)
            stats = receiver.results()
            unique = int(stats["unique"])
            lat = sorted(stats["latency_ms"])
            window = max(1e-9, stats["last_arrival"] - pub["t_first_send"])
            log(f"  {self.name} {phase}: {unique / window:,.0f} deliveries/s")
            values = {
                "deliveries_per_s": unique / window,
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
            }
            problems = {
                "missing_deliveries": max(0, expected - unique),
                "publish_errors": sum(pub["errors"].values()) + (self.events - pub["accepted"]),
                "bad_signatures": int(stats["bad_signatures"]),
                "no_signature_checked": 0 if stats["verified"] else 1,
            }
            return values, problems, {"deliveries": unique}
        raise AssertionError("unreachable")  # pragma: no cover


def cases(options: Options) -> list[OrderingCase]:
    n = options.events or (300 if options.smoke else 5_000 if options.quick else 20_000)
    return [OrderingCase(store, n, options.concurrency) for store in STORES]
