"""Pieces every scenario shares: the receiver and load-generator processes, the machine's
busy CPU, percentiles, and the optional profiler."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import psutil

from bench import procs
from bench.harness import Options, log
from bench.profiling import Profiler, find_py_spy


class Server(Protocol):
    """What the publisher needs of the system under test: ``hookcast serve``
    (:class:`bench.gateway.Gateway`) or the reference prototype (``bench/reference.py``)."""

    @property
    def project_base(self) -> str: ...  # the publish URL is this plus ``/events``

    @property
    def api_key(self) -> str: ...

    def check_alive(self) -> None: ...


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def pad_for(payload_bytes: int = 1024) -> str:
    """Padding that makes ``{"t":…,"seq":…,"pad":"…"}`` about ``payload_bytes`` long."""
    base = len(orjson.dumps({"t": time.time(), "seq": 1_000_000, "pad": ""}))
    return "x" * max(0, payload_bytes - base)


class Machine:
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


def service_cpu_s(names: tuple[str, ...]) -> float:
    """CPU seconds of the machine's service processes with these names (the PostgreSQL
    server and its backends, redis-server): they work for the benchmark, so their CPU is
    counted as the benchmark's, not as load from outside it."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        try:
            if (proc.info["name"] or "").startswith(names):
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


class Receiver:
    """The receiving endpoint (``bench/receiver.py``) as a child process."""

    def __init__(self, workdir: Path) -> None:
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "receiver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def __enter__(self) -> Receiver:
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

    def hook_url(self, index: int, prefix: str = "hook") -> str:
        return f"{self.base}/{prefix}/{index}"

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

    def set_secrets(self, by_path: dict[str, str]) -> None:
        self.call("POST", "/__bench/secrets", by_path)

    def cpu_s(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def wait_for(
        self,
        expected: int,
        *,
        hard_s: float,
        stall_s: float = 20.0,
        alive: Server | None = None,
        procs_alive: list[subprocess.Popen[bytes]] | None = None,
    ) -> int:
        """Poll until ``expected`` distinct deliveries arrived, nothing arrived for
        ``stall_s``, or ``hard_s`` passed; returns how many arrived."""
        hard = time.monotonic() + hard_s
        seen, last_change = -1, time.monotonic()
        while time.monotonic() < hard:
            unique = int(self.stats()["unique"])
            if unique >= expected:
                return unique
            if unique != seen:
                seen, last_change = unique, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                break
            if alive is not None:
                alive.check_alive()
            for proc in procs_alive or []:
                if proc.poll() is not None:
                    raise procs.BenchError(f"process {proc.pid} exited with {proc.returncode}")
            time.sleep(0.1)
        log(f"  gave up waiting: {max(seen, 0):,} of {expected:,} deliveries arrived")
        return max(seen, 0)


class Publisher:
    """Runs the load generator process and waits, bounded, until its events are delivered."""

    def __init__(
        self,
        gateway: Server,
        targets: list[dict[str, Any]],
        fanout: int,
        concurrency: int,
        workdir: Path,
        url_path: str = "/events",
    ) -> None:
        self.gateway = gateway
        self.targets = targets
        self.fanout = fanout
        self.concurrency = concurrency
        self.workdir = workdir
        self.url = gateway.project_base + url_path

    def publish(self, events: int, *, rate: float) -> dict[str, Any]:
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
            "--targets",
            orjson.dumps(self.targets).decode(),
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
        finally:
            procs.stop(proc)
        if pub["errors"]:
            log(f"  publish errors: {pub['errors']}")
        return pub

    def run_to_completion(
        self, receiver: Receiver, events: int, *, rate: float, expected_per_event: float = 0
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        pub = self.publish(events, rate=rate)
        expected = round(pub["accepted"] * (expected_per_event or self.fanout))
        receiver.wait_for(expected, hard_s=60 + expected / 200, alive=self.gateway)
        return pub, receiver.results()

    def _wait_publish(self, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            self.gateway.check_alive()
            if time.monotonic() > deadline:
                raise procs.BenchError(f"load generator still running after {timeout_s:.0f}s")
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else b""
        if proc.returncode != 0 or not out.strip():
            why = procs.tail(self.workdir / "loadgen.log")
            raise procs.BenchError(f"load generator exited {proc.returncode}:\n{why}")
        return orjson.loads(out)  # type: ignore[no-any-return]


def start_profiler(options: Options, pid: int | None, workdir: Path) -> Profiler | None:
    py_spy = find_py_spy(options.py_spy)
    if py_spy is None or pid is None:
        log("  py-spy not found (pip install py-spy, or pass --py-spy PATH): no profile")
        return None
    profiler = Profiler(py_spy, pid, workdir / "profile.txt")
    time.sleep(0.5)  # let py-spy attach before the load starts
    return profiler
