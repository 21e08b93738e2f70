"""Child processes for the benchmarks: started in their own session, always ended.

Every process the suite starts goes through :func:`spawn`, which records it; :func:`stop`
ends one (SIGTERM to its process group, then SIGKILL after a grace period) and
:func:`stop_all` ends whatever is left, and runs at interpreter exit and on SIGTERM.
Only processes started here are ever signalled, and only by their own id.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent

_live: dict[int, subprocess.Popen[bytes]] = {}
# loopback only: never route the suite's own requests through an HTTP proxy from the env
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """A benchmark could not run as planned (a process died, a deadline passed, …)."""


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    stderr: IO[Any] | int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        list(argv),
        env=full_env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,  # its own process group, so stop() reaches its children too
    )
    _live[proc.pid] = proc
    return proc


def stop(
    proc: subprocess.Popen[bytes] | None, grace_s: float = 5.0, sig: int = signal.SIGTERM
) -> None:
    if proc is None:
        return
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        else:
            # the leader is gone; make sure nothing it started lingers in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        _live.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_live.values()):
        stop(proc, grace_s=2.0)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally, which stops children


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_sigterm)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One small JSON request with the standard library; returns (status, parsed body)."""
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    return status, (orjson.loads(raw) if raw else None)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    step_s: float = 0.05,
) -> None:
    """Poll ``ready`` until it holds; raise if ``timeout_s`` passes or a watched process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in alive:
            if proc.poll() is not None:
                raise BenchError(f"{what}: process {proc.pid} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(step_s)
    raise BenchError(f"{what}: not ready after {timeout_s:g}s")


def http_up(url: str) -> Callable[[], bool]:
    def check() -> bool:
        status, _ = http_json("GET", url, timeout=1.0)
        return status == 200

    return check


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
