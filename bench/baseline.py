"""The baseline a Python team would otherwise write: a task queue, one task per webhook.

Same machine, same run, same receiver, same ~1 KiB body, same signature scheme as
hookcast's end-to-end cases:

* ``celery``: Celery with a Redis broker (``bench/celery_app.py``), results ignored,
  a prefork worker with one process per core (``-c <cores>``; thread and gevent pools are
  slower for this CPU-bound work), gossip, mingle and heartbeat off;
* ``dramatiq``: dramatiq with a Redis broker (``bench/dramatiq_app.py``), one process per
  core with 8 threads each.

Each task signs the body and POSTs it with ``requests`` (``bench/diy.py``). The producer
(``bench/enqueue.py``, its own process, like hookcast's load generator) enqueues N tasks
while the workers already run; the clock runs from the first enqueue until the receiver
has seen the N-th distinct delivery, the same window as hookcast's deliveries/s. Redis
is ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379``); each baseline uses a database
of its own (13 for Celery, 14 for dramatiq), flushed before and after each run, and no
other database is touched. Without the ``bench`` extra (``pip install -e '.[bench]'``)
or without Redis the figures are recorded as null with the reason.

``hookcast_vs_celery_ratio`` in ``results.json`` is hookcast's median
``e2e_deliveries_per_s`` (fan-out 1, SQLite) over ``celery_deliveries_per_s``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import procs
from bench.harness import Metric, Options, Outcome, log
from bench.machine import redis_url
from bench.parts import Machine, Receiver, percentile, service_cpu_s

NAME = "baseline"
TITLE = "Baseline: Celery and dramatiq, one task per webhook (Redis broker, requests)"

_PER_CASE: dict[str, Metric] = {
    "deliveries_per_s": Metric("deliveries completed/s", "/s"),
    "enqueue_per_s": Metric("tasks enqueued/s (producer)", "/s"),
    "p50_ms": Metric("enqueue→delivered p50", "ms", 1),
    "p99_ms": Metric("enqueue→delivered p99", "ms", 1),
    "worker_cpu_us_per_delivery": Metric("worker CPU per delivery", "µs"),
    "worker_peak_rss_mib": Metric("worker peak RSS (all its processes)", "MiB"),
    "redis_cpu_us_per_delivery": Metric("Redis CPU per delivery", "µs"),
    "background_cpu_cores": Metric("CPU used outside the benchmark", "cores", 2, show_spread=False),
}
SYSTEMS = {"celery": 13, "dramatiq": 14}  # system -> its Redis database

METRICS: dict[str, Metric] = {f"{s}_{k}": m for s in SYSTEMS for k, m in _PER_CASE.items()}


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BaselineCase:
    name: str  # celery | dramatiq
    events: int
    warmup: int

    @property
    def db(self) -> int:
        return SYSTEMS[self.name]

    def worker_argv(self) -> list[str]:
        if self.name == "celery":
            return [
                procs.PY,
                "-m",
                "celery",
                "-A",
                "bench.celery_app",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(_cores()),
                "-l",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        return [
            procs.PY,
            "-m",
            "dramatiq",
            "bench.dramatiq_app",
            "--processes",
            str(_cores()),
            "--threads",
            "8",
        ]

    def describe(self) -> dict[str, Any]:
        how = (
            f"Celery prefork worker, -c {_cores()}"
            if self.name == "celery"
            else f"dramatiq, {_cores()} processes x 8 threads"
        )
        return {
            "summary": f"{self.events:,} tasks, one per webhook (~1 KiB body, signed, POSTed "
            f"with a keep-alive requests.Session); {how}; Redis db {self.db}; "
            f"{self.warmup:,} warm-up tasks first",
            "events": self.events,
            "worker": " ".join(self.worker_argv()[1:]),
            "redis_db": self.db,
            "warmup": self.warmup,
        }

    def key(self, name: str) -> str:
        return f"{self.name}_{name}"

    def metric_keys(self) -> list[str]:
        return [self.key(k) for k in _PER_CASE]

    def _unavailable(self) -> str:
        if importlib.util.find_spec(self.name) is None or importlib.util.find_spec("redis") is None:
            return f"{self.name} is not installed (pip install -e '.[bench]')"
        try:
            import redis

            redis.Redis.from_url(redis_url(self.db), socket_timeout=3).ping()
        except Exception as exc:
            return f"Redis at {redis_url(self.db)} is not reachable: {exc}"
        return ""

    def run(self, options: Options, *, profile: bool = False) -> Outcome:
        why = self._unavailable()
        if why:
            return Outcome(unavailable=why, null_keys=tuple(self.metric_keys()))
        import redis

        broker = redis.Redis.from_url(redis_url(self.db), socket_timeout=10)
        env = {
            "BENCH_CELERY_BROKER": redis_url(SYSTEMS["celery"]),
            "BENCH_DRAMATIQ_BROKER": redis_url(SYSTEMS["dramatiq"]),
        }
        with contextlib.ExitStack() as stack:
            broker.flushdb()  # only this baseline's own database
            stack.callback(broker.flushdb)
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="hookcast-bench-"))
            )
            receiver = stack.enter_context(Receiver(workdir))
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            receiver.set_secrets({"/hook/0": secret})
            url = receiver.hook_url(0)
            with (workdir / "worker.log").open("wb") as log_file:
                worker = procs.spawn(self.worker_argv(), env=env, stderr=log_file, stdout=log_file)
            stack.callback(procs.stop, worker, 15.0)
            ps = psutil.Process(worker.pid)
            try:
                self._enqueue(env, url, secret, self.warmup, workdir)
                receiver.wait_for(self.warmup, hard_s=60, stall_s=45, procs_alive=[worker])
            except procs.BenchError as exc:
                raise procs.BenchError(f"{exc}\n{procs.tail(workdir / 'worker.log')}") from exc
            if receiver.stats()["unique"] < self.warmup:
                raise procs.BenchError(
                    f"{self.name} worker did not deliver its warm-up tasks:\n"
                    + procs.tail(workdir / "worker.log")
                )
            receiver.reset()
            redis0 = service_cpu_s(("redis-server",))
            machine0, cpu0, rx0 = Machine(), _tree_cpu(ps), receiver.cpu_s()
            pub = self._enqueue(env, url, secret, self.events, workdir)
            receiver.wait_for(self.events, hard_s=60 + self.events / 100, procs_alive=[worker])
            stats = receiver.results()
            cpu = _tree_cpu(ps) - cpu0
            redis_cpu = service_cpu_s(("redis-server",)) - redis0
            background = machine0.others_cores(
                cpu + redis_cpu + receiver.cpu_s() - rx0 + pub["cpu_total_s"]
            )
            if background > 0.1:
                log(f"  note: {background:.2f} cores busy outside the benchmark")
            unique = int(stats["unique"])
            lat = sorted(stats["latency_ms"])
            window = max(1e-9, stats["last_arrival"] - pub["t_first"])
            values = {
                "deliveries_per_s": unique / window,
                "enqueue_per_s": pub["enqueue_per_s"],
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "worker_cpu_us_per_delivery": cpu / max(1, unique) * 1e6,
                "worker_peak_rss_mib": _tree_peak_rss_mib(ps),
                "redis_cpu_us_per_delivery": redis_cpu / max(1, unique) * 1e6,
                "background_cpu_cores": background,
            }
            return Outcome(
                metrics={self.key(k): v for k, v in values.items()},
                problems={
                    "baseline_missing_deliveries": max(0, self.events - unique),
                    "baseline_bad_signatures": int(stats["bad_signatures"]),
                    "baseline_no_signature_checked": 0 if stats["verified"] else 1,
                },
                counts={
                    f"baseline_{self.name}_deliveries_received": unique,
                    f"baseline_{self.name}_signatures_verified": int(stats["verified"]),
                },
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _enqueue(
        self, env: dict[str, str], url: str, secret: str, n: int, workdir: Path
    ) -> dict[str, Any]:
        deadline_s = 60 + n / 200
        argv = [
            procs.PY,
            "-m",
            "bench.enqueue",
            "--system",
            self.name,
            "--events",
            str(n),
            "--url",
            url,
            "--secret",
            secret,
            "--deadline-s",
            str(deadline_s),
        ]
        with (workdir / "enqueue.log").open("ab") as err:
            proc = procs.spawn(argv, env=env, stdout=subprocess.PIPE, stderr=err)
        try:
            out, _ = proc.communicate(timeout=deadline_s + 30)
        except subprocess.TimeoutExpired as exc:
            raise procs.BenchError(
                f"{self.name} producer still running after the deadline"
            ) from exc
        finally:
            procs.stop(proc)
        if proc.returncode != 0 or not out.strip():
            raise procs.BenchError(
                f"{self.name} producer exited {proc.returncode}:\n"
                + procs.tail(workdir / "enqueue.log")
            )
        return orjson.loads(out)  # type: ignore[no-any-return]


def _tree(ps: psutil.Process) -> list[psutil.Process]:
    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.Error:
        return [ps]


def _tree_cpu(ps: psutil.Process) -> float:
    total = 0.0
    for proc in _tree(ps):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def _tree_peak_rss_mib(ps: psutil.Process) -> float:
    total = 0.0
    for proc in _tree(ps):
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024.0
        except OSError:
            continue
    return total


def cases(options: Options) -> list[BaselineCase]:
    quick = options.quick
    n = options.events or (200 if options.smoke else 1_000 if quick else 5_000)
    warmup = 20 if options.smoke else 50 if quick else 100
    return [BaselineCase("celery", n, warmup), BaselineCase("dramatiq", n, warmup)]
