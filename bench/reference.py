"""The reference prototype, side by side with hookcast: the same load, the same receiver.

This scenario uses the team's **reference prototype**, a ~200-line lean webhook gateway
kept *outside* this repository and outside the product: ``<repo>/../shared/reference/proto``
(``proto_gateway.py``, ``common.py``; see its README), or the directory in
``HOOKCAST_REFERENCE_DIR``. It is run from where it is, with the suite's interpreter; none
of its code is copied here. It has no API keys, projects, validation, subscriptions,
leases, attempt log, retry strategy, limits, breakers or SSRF guard: it is the floor of
what a two-process SQLite webhook gateway costs in Python on this machine, so hookcast's
figures over its are what hookcast's features and engine cost. When the directory is not
there, every figure is ``null`` with the reason ``reference prototype not found at …``
(no failed check, the exit status is not affected).

The prototype's two roles, each its own process on a fresh SQLite file (WAL,
``synchronous=FULL``, hookcast's default durability):

* ``proto_gateway.py ingest --db DB --port P --fanout 1 --max-batch 500``: aiohttp
  ``POST /events`` (a JSON body with a ``type``; no auth), group commit of the event and
  its delivery row, 201 ``{"id":N}`` after the commit;
* ``proto_gateway.py dispatch --db DB --target RECEIVER --concurrency 100 --batch 200``:
  claims due deliveries, signs each one (Standard Webhooks HMAC-SHA256, its own key from
  ``common.py``) and POSTs it to ``RECEIVER/ep0``.

Both exit by themselves after ``--max-seconds`` (set well past the run's own deadlines)
and are stopped by the suite when the case ends.

Two cases, interleaved run by run with hookcast's (the scenario runs right after ``e2e``):

* ``fanout1``: ingest + dispatch, fed by the same load generator (``bench/loadgen.py``),
  with the same number of events, warm-up and concurrency as ``e2e``'s ``fanout1``,
  delivering to the same receiver (``bench/receiver.py``). The body the load generator
  sends carries the publish time, and the prototype delivers the body it was posted, so
  the receiver computes publish→delivered latency as for hookcast; it is given the
  prototype's signing key for the path ``/ep0`` and verifies the same sample of
  signatures. Measured as ``e2e.py`` measures hookcast: events/s, deliveries/s (first send
  → last delivery seen), latency percentiles, server CPU (the prototype's two processes,
  user + system, psutil), server CPU per delivery, peak RSS (``VmHWM``, summed). Checked:
  every accepted event was delivered, signatures verify, no publish failed.
* ``ingest``: the ingest role alone (no dispatch), as ``ingest.py`` measures ``hookcast
  serve --no-worker``: the same load generator and event count as its ``max`` case;
  events/s accepted, publish-call latency, server CPU per event. Checked: every event that
  got its 201 is in the SQLite file, read by another connection while the server runs.

Derived in ``results.json`` (``bench/summary.py``): ``hookcast_vs_reference_ratio``,
``hookcast_vs_reference_cpu_ratio`` and ``hookcast_vs_reference_ingest_ratio``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import os
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import e2e, ingest, procs
from bench.harness import Metric, Options, Outcome, log
from bench.parts import Machine, Publisher, Receiver, percentile, start_profiler
from bench.profiling import Profiler

NAME = "reference"
TITLE = "Reference prototype: the lean ~200-line gateway, same load and receiver as hookcast"

ENV_DIR = "HOOKCAST_REFERENCE_DIR"
EVENT_TYPE = "bench.e2e"
INGEST_MAX_BATCH = 500  # hookcast's HOOKCAST_INGEST_BATCH_MAX default
DISPATCH_CONCURRENCY = 100
DISPATCH_BATCH = 200

_FANOUT: dict[str, Metric] = {
    "events_per_s": e2e.PER_CASE["events_per_s"],
    "deliveries_per_s": e2e.PER_CASE["deliveries_per_s"],
    "p50_ms": e2e.PER_CASE["p50_ms"],
    "p95_ms": e2e.PER_CASE["p95_ms"],
    "p99_ms": e2e.PER_CASE["p99_ms"],
    "ack_p99_ms": e2e.PER_CASE["ack_p99_ms"],
    "server_cpu_s": Metric("server CPU (ingest + dispatch)", "s", 2),
    "server_cpu_us_per_delivery": e2e.PER_CASE["server_cpu_us_per_delivery"],
    "server_peak_rss_mib": Metric("server peak RSS (ingest + dispatch)", "MiB"),
    "loadgen_cpu_s": e2e.PER_CASE["loadgen_cpu_s"],
    "receiver_cpu_s": e2e.PER_CASE["receiver_cpu_s"],
    "background_cpu_cores": e2e.PER_CASE["background_cpu_cores"],
}
_INGEST: dict[str, Metric] = {
    "events_per_s": ingest.METRICS["ingest_events_per_s"],
    "ack_p50_ms": ingest.METRICS["ingest_ack_p50_ms"],
    "ack_p95_ms": ingest.METRICS["ingest_ack_p95_ms"],
    "ack_p99_ms": ingest.METRICS["ingest_ack_p99_ms"],
    "ack_p999_ms": ingest.METRICS["ingest_ack_p999_ms"],
    "ack_max_ms": ingest.METRICS["ingest_ack_max_ms"],
    "server_cpu_us_per_event": ingest.METRICS["ingest_server_cpu_us_per_event"],
    "server_peak_rss_mib": ingest.METRICS["ingest_server_peak_rss_mib"],
    "loadgen_cpu_s": ingest.METRICS["ingest_loadgen_cpu_s"],
    "background_cpu_cores": ingest.METRICS["ingest_background_cpu_cores"],
}
METRICS: dict[str, Metric] = {
    **{f"reference_{k}": m for k, m in _FANOUT.items()},
    **{f"reference_ingest_{k}": m for k, m in _INGEST.items()},
}


# -- where the prototype is ----------------------------------------------------------------------
def reference_dir() -> Path:
    """``HOOKCAST_REFERENCE_DIR``, else ``<repo>/../shared/reference/proto``."""
    explicit = os.environ.get(ENV_DIR, "").strip()
    return Path(explicit) if explicit else procs.REPO.parent / "shared" / "reference" / "proto"


def missing_reason(directory: Path) -> str:
    """Why the prototype cannot be run from ``directory`` ("" when it can)."""
    if not ((directory / "proto_gateway.py").is_file() and (directory / "common.py").is_file()):
        return f"reference prototype not found at {directory}"
    return ""


def _digest(directory: Path) -> str:
    """Which prototype was measured (it lives outside the repository's history)."""
    h = hashlib.sha256()
    for name in ("proto_gateway.py", "common.py"):
        with contextlib.suppress(OSError):
            h.update((directory / name).read_bytes())
    return h.hexdigest()[:16]


def signing_secret(directory: Path) -> str:
    """The prototype's signing key (``common.SECRET``, raw HMAC key bytes) in the
    ``whsec_<base64>`` form the receiver decodes back to those bytes."""
    spec = importlib.util.spec_from_file_location(
        "_hookcast_bench_reference_common", directory / "common.py"
    )
    if spec is None or spec.loader is None:
        raise procs.BenchError(f"cannot load {directory / 'common.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not put in sys.modules
    key = module.SECRET
    if isinstance(key, str):
        key = key.encode()
    return "whsec_" + base64.b64encode(key).decode()


# -- the prototype's processes -------------------------------------------------------------------
@dataclass
class Prototype:
    """The prototype's ingest role, and its dispatch role when given a ``target``, on a
    fresh SQLite file; quacks like :class:`bench.gateway.Gateway` for the publisher."""

    directory: Path
    workdir: Path
    target: str = ""  # the receiver's base URL; "" = no dispatch process
    max_seconds: float = 900.0
    port: int = 0
    api_key: str = "unused"  # the prototype has no auth; the header is sent and ignored
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ps: dict[str, psutil.Process] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.workdir / "proto.db"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def project_base(self) -> str:
        return self.base  # the publish URL is base + "/events"

    def _log(self, role: str) -> Path:
        return self.workdir / f"proto-{role}.log"

    def _spawn(self, role: str, *args: str) -> None:
        argv = [
            procs.PY,
            str(self.directory / "proto_gateway.py"),
            role,
            "--db",
            str(self.db),
            "--synchronous",
            "FULL",
            "--max-seconds",
            str(int(self.max_seconds)),
            *args,
        ]
        with self._log(role).open("wb") as log_file:
            proc = procs.spawn(argv, stderr=log_file, stdout=log_file)
        self.children[role] = proc
        self.ps[role] = psutil.Process(proc.pid)

    def __enter__(self) -> Prototype:
        self.port = procs.free_port()
        self._spawn(
            "ingest",
            "--port",
            str(self.port),
            "--fanout",
            "1",
            "--max-batch",
            str(INGEST_MAX_BATCH),
        )
        try:
            procs.wait_until(
                procs.http_up(self.base + "/stats"),
                timeout_s=30,
                what="reference ingest",
                alive=[self.children["ingest"]],
            )
        except procs.BenchError as exc:
            raise procs.BenchError(f"{exc}\n{procs.tail(self._log('ingest'))}") from exc
        if self.target:
            # started after ingest has created the schema, as proto_run.py does
            self._spawn(
                "dispatch",
                "--target",
                self.target,
                "--concurrency",
                str(DISPATCH_CONCURRENCY),
                "--batch",
                str(DISPATCH_BATCH),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for role in ("dispatch", "ingest"):
            procs.stop(self.children.get(role), grace_s=10.0)

    def check_alive(self) -> None:
        for role, proc in self.children.items():
            if proc.poll() is not None:
                raise procs.BenchError(
                    f"reference {role} exited with {proc.returncode}:\n"
                    + procs.tail(self._log(role))
                )

    def prime(self) -> None:
        """One event through ingest (and dispatch, when running): both are up and working."""
        body = {"type": "bench.ready", "data": {"t": time.time(), "seq": -1}}
        status, doc = procs.http_json("POST", self.base + "/events", body, timeout=30)
        if status != 201 or not isinstance(doc, dict) or "id" not in doc:
            raise procs.BenchError(f"reference POST /events: {status} {doc}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the prototype's processes."""
        total = 0.0
        for ps in self.ps.values():
            with contextlib.suppress(psutil.Error):
                t = ps.cpu_times()
                total += t.user + t.system
        return total

    def peak_rss_mib(self) -> float:
        """``VmHWM`` summed over the prototype's processes; call it while they run."""
        total = 0.0
        for ps in self.ps.values():
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{ps.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024.0
        return total

    def committed(self) -> int:
        """Events in the SQLite file, read by a separate connection (so: committed)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        finally:
            conn.close()


def _profilers(options: Options, proto: Prototype, workdir: Path) -> dict[str, Profiler]:
    out: dict[str, Profiler] = {}
    for role, proc in proto.children.items():
        sub = workdir / f"profile-{role}"
        sub.mkdir(exist_ok=True)
        profiler = start_profiler(options, proc.pid, sub)
        if profiler is not None:
            out[role] = profiler
    return out


def _finish(profilers: dict[str, Profiler]) -> str:
    return "\n".join(f"{role}:\n{p.finish()}" for role, p in profilers.items())


# -- the cases ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceCase:
    name: str  # fanout1 | ingest
    prefix: str  # metric keys are prefix + key
    events: int
    warmup: int
    concurrency: int

    @property
    def table(self) -> dict[str, Metric]:
        return _INGEST if self.name == "ingest" else _FANOUT

    @property
    def tag(self) -> str:
        return self.prefix.rstrip("_")  # names the problem and count keys

    def describe(self) -> dict[str, Any]:
        directory = reference_dir()
        mirrors = "`ingest`'s `max`" if self.name == "ingest" else "`e2e`'s `fanout1`"
        roles = (
            "`proto_gateway.py ingest` alone"
            if self.name == "ingest"
            else "`proto_gateway.py ingest` + `dispatch` (concurrency "
            f"{DISPATCH_CONCURRENCY}, claim batch {DISPATCH_BATCH}) to the receiver"
        )
        return {
            "summary": f"the reference prototype: {roles}, SQLite synchronous=FULL; "
            f"{self.events:,} events x ~1 KiB via `/events`, {self.concurrency} concurrent "
            f"publishers, {self.warmup:,} warm-up events first (as {mirrors})",
            "events": self.events,
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "directory": str(directory),
            "digest": _digest(directory) if not missing_reason(directory) else None,
        }

    def metric_keys(self) -> list[str]:
        return [self.prefix + k for k in self.table]

    def _max_seconds(self) -> float:
        # past every deadline of the run (publish, then wait for deliveries), so the
        # prototype never exits by itself mid-run; the suite stops it when the case ends
        n = self.events + self.warmup
        return 600 + n / 20

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        directory = reference_dir()
        why = missing_reason(directory)
        if why:
            return Outcome(unavailable=why, null_keys=tuple(self.metric_keys()))
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-ref-")))
            if self.name == "ingest":
                return self._run_ingest(options, directory, workdir, stack, profile)
            return self._run_fanout1(options, directory, workdir, stack, profile)
        raise AssertionError("unreachable")  # pragma: no cover

    def _publisher(self, proto: Prototype, workdir: Path) -> Publisher:
        # the prototype wants a "type"; the load generator adds its event_type and data
        return Publisher(proto, [{"type": EVENT_TYPE}], 1, self.concurrency, workdir)

    def _run_fanout1(
        self,
        options: Options,
        directory: Path,
        workdir: Path,
        stack: contextlib.ExitStack,
        profile: bool,
    ) -> Outcome:
        receiver = stack.enter_context(Receiver(workdir))
        # the prototype posts every delivery of endpoint 0 to <target>/ep0
        receiver.set_secrets({"/ep0": signing_secret(directory)})
        proto = stack.enter_context(
            Prototype(directory, workdir, target=receiver.base, max_seconds=self._max_seconds())
        )
        proto.prime()
        receiver.wait_for(1, hard_s=30, stall_s=30, alive=proto)
        if receiver.stats()["unique"] < 1:
            raise procs.BenchError(
                "reference dispatch delivered nothing:\n"
                + procs.tail(workdir / "proto-dispatch.log")
            )
        receiver.reset()
        publish = self._publisher(proto, workdir)
        if self.warmup:
            publish.run_to_completion(receiver, self.warmup, rate=0.0)
            receiver.reset()
        profilers = _profilers(options, proto, workdir) if profile else {}
        machine0, cpu0, rx_cpu0 = Machine(), proto.cpu_s(), receiver.cpu_s()
        pub, stats = publish.run_to_completion(receiver, self.events, rate=0.0)
        cpu, rx_cpu = proto.cpu_s() - cpu0, receiver.cpu_s() - rx_cpu0
        background = machine0.others_cores(cpu + rx_cpu + pub["cpu_total_s"])
        if background > 0.1:
            log(f"  note: {background:.2f} cores busy outside the benchmark: figures perturbed")
        expected = pub["accepted"]
        lat = sorted(stats["latency_ms"])
        unique = int(stats["unique"])
        window = max(1e-9, stats["last_arrival"] - pub["t_first_send"])
        values = {
            "events_per_s": pub["events_per_s"],
            "deliveries_per_s": unique / window,
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
            "ack_p99_ms": pub["ack_p99_ms"],
            "server_cpu_s": cpu,
            "server_cpu_us_per_delivery": cpu / max(1, unique) * 1e6,
            "server_peak_rss_mib": proto.peak_rss_mib(),
            "loadgen_cpu_s": pub["cpu_s"],
            "receiver_cpu_s": rx_cpu,
            "background_cpu_cores": background,
        }
        tag = self.tag
        return Outcome(
            metrics={self.prefix + k: v for k, v in values.items()},
            profile=_finish(profilers),
            problems={
                f"{tag}_missing_deliveries": max(0, expected - unique),
                f"{tag}_publish_errors": sum(pub["errors"].values())
                + (self.events - pub["accepted"]),
                f"{tag}_bad_signatures": int(stats["bad_signatures"]),
                f"{tag}_unverifiable_signatures": int(stats["unverifiable"]),
                f"{tag}_deliveries_without_timestamp": int(stats["no_timestamp"]),
                f"{tag}_no_signature_checked": 0 if stats["verified"] else 1,
            },
            counts={
                f"{tag}_events_accepted": pub["accepted"],
                f"{tag}_deliveries_expected": expected,
                f"{tag}_deliveries_received": unique,
                f"{tag}_duplicate_deliveries": int(stats["duplicates"]),
                f"{tag}_signatures_verified": int(stats["verified"]),
            },
        )

    def _run_ingest(
        self,
        options: Options,
        directory: Path,
        workdir: Path,
        stack: contextlib.ExitStack,
        profile: bool,
    ) -> Outcome:
        proto = stack.enter_context(Prototype(directory, workdir, max_seconds=self._max_seconds()))
        proto.prime()
        publish = self._publisher(proto, workdir)
        if self.warmup:
            publish.publish(self.warmup, rate=0.0)
        committed0 = proto.committed()
        profilers = _profilers(options, proto, workdir) if profile else {}
        machine0, cpu0 = Machine(), proto.cpu_s()
        pub = publish.publish(self.events, rate=0.0)
        cpu = proto.cpu_s() - cpu0
        background = machine0.others_cores(cpu + pub["cpu_total_s"])
        committed = proto.committed() - committed0
        if background > 0.1:
            log(f"  note: {background:.2f} cores busy outside the benchmark")
        values = {
            "events_per_s": pub["events_per_s"],
            "ack_p50_ms": pub["ack_p50_ms"],
            "ack_p95_ms": pub["ack_p95_ms"],
            "ack_p99_ms": pub["ack_p99_ms"],
            "ack_p999_ms": pub["ack_p999_ms"],
            "ack_max_ms": pub["ack_max_ms"],
            "server_cpu_us_per_event": cpu / max(1, pub["accepted"]) * 1e6,
            "server_peak_rss_mib": proto.peak_rss_mib(),
            "loadgen_cpu_s": pub["cpu_s"],
            "background_cpu_cores": background,
        }
        tag = self.tag
        return Outcome(
            metrics={self.prefix + k: v for k, v in values.items()},
            profile=_finish(profilers),
            problems={
                f"{tag}_publish_errors": sum(pub["errors"].values())
                + (self.events - pub["accepted"]),
                f"{tag}_acknowledged_not_committed": max(0, pub["accepted"] - committed),
            },
            counts={
                f"{tag}_events_accepted": pub["accepted"],
                f"{tag}_events_committed": committed,
            },
        )


def _mirror(cases: list[Any], name: str) -> tuple[int, int, int]:
    """(events, warmup, concurrency) of the hookcast case the reference case mirrors."""
    case = next(c for c in cases if c.name == name)
    return case.events, case.warmup, case.concurrency


def cases(options: Options) -> list[ReferenceCase]:
    # exactly the sizes of the hookcast cases compared against, whatever the mode
    return [
        ReferenceCase("fanout1", "reference_", *_mirror(e2e.cases(options), "fanout1")),
        ReferenceCase("ingest", "reference_ingest_", *_mirror(ingest.cases(options), "max")),
    ]
