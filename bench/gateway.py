"""A real ``hookcast serve`` process on a fresh database, and the API calls to set it up.

By default the store is a fresh SQLite file in the gateway's own temporary directory;
``database_url`` points it elsewhere (the PostgreSQL scenario gives a fresh database).
The project is created through the API with an instance admin key the server is started
with (``HOOKCAST_ADMIN_API_KEY``), which saves a CLI start-up per case. A scenario that
must write into the database before the server starts (broadcast seeds 100,000 endpoints)
calls :meth:`Gateway.prepare_offline` first, which creates the project with the CLI.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import procs

HOOKCAST = [sys.executable, "-m", "hookcast"]  # the same interpreter as the harness


def bench_workers() -> int:
    """Delivery worker processes beside the API process (``HOOKCAST_BENCH_WORKERS``, 1)."""
    return int(os.environ.get("HOOKCAST_BENCH_WORKERS", "1"))


@dataclass
class Gateway:
    """One server process plus the project it serves; use as a context manager."""

    env: dict[str, str] = field(default_factory=dict)
    #: delivery worker processes beside the API process (0 = all in one process)
    workers: int = field(default_factory=bench_workers)
    #: more ``hookcast serve`` flags, e.g. ``["--no-worker"]``
    serve_args: list[str] = field(default_factory=list)
    #: the project's ``config`` (e.g. ``{"broadcast_rate": 0}``); None = hookcast's defaults
    project_config: dict[str, Any] | None = None
    #: None = a fresh SQLite file in ``workdir``
    database: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hookcast-bench-")))
    port: int = 0
    project_id: str = ""
    api_key: str = ""
    admin_key: str = field(default_factory=lambda: "bench-admin-" + secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.sqlite_path}"

    @property
    def sqlite_path(self) -> Path:
        return self.workdir / "hookcast.db"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def project_base(self) -> str:
        return f"{self.base}/api/v1/projects/{self.project_id}"

    def full_env(self) -> dict[str, str]:
        return {
            # deliveries go to the receiver on loopback, which the SSRF guard refuses otherwise
            "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
            # the per-key API rate limit (a policy, default 1,000 requests/s) would cap the
            # publishers, and the benchmark measures what the server can take
            "HOOKCAST_API_RATE_LIMIT": "0",
            "HOOKCAST_ADMIN_API_KEY": self.admin_key,
            **self.env,
        }

    # -- set-up ---------------------------------------------------------------------------------
    def cli(self, *args: str, timeout_s: float = 120) -> dict[str, Any]:
        """``hookcast ARGS --json --database-url …``; returns its JSON output."""
        out = subprocess.run(
            [*HOOKCAST, *args, "--json", "--database-url", self.database_url],
            env={**os.environ, **self.full_env()},
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if out.returncode != 0:
            raise procs.BenchError(f"hookcast {args[0]} failed: {out.stderr.decode()[-2000:]}")
        return orjson.loads(out.stdout)  # type: ignore[no-any-return]

    def prepare_offline(self) -> None:
        """Create the schema and the project with the CLI, before the server starts."""
        argv = ["project", "create", "bench"]
        if self.project_config is not None:
            argv += ["--config", orjson.dumps(self.project_config).decode()]
        created = self.cli(*argv)
        self.project_id, self.api_key = created["project_id"], created["api_key"]

    def start(self) -> Gateway:
        self.port = procs.free_port()
        with self.log_path.open("wb") as log:
            self.proc = procs.spawn(
                [
                    *HOOKCAST,
                    "serve",
                    "--port",
                    str(self.port),
                    "--database-url",
                    self.database_url,
                    "--workers",
                    str(self.workers),
                    *self.serve_args,
                ],
                env=self.full_env(),
                stderr=log,
            )
        self.ps = psutil.Process(self.proc.pid)
        try:
            procs.wait_until(
                procs.http_up(self.base + "/health"),
                timeout_s=60,
                what="hookcast serve",
                alive=[self.proc],
            )
        except procs.BenchError as exc:
            raise procs.BenchError(f"{exc}\n{procs.tail(self.log_path)}") from exc
        if not self.project_id:
            self._create_project()
        return self

    def _create_project(self) -> None:
        body: dict[str, Any] = {"name": "bench", "type": "outgoing"}
        if self.project_config is not None:
            body["config"] = self.project_config
        status, doc = procs.http_json(
            "POST",
            self.base + "/api/v1/projects",
            body,
            {"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )
        if status != 201 or not doc or doc.get("status") is not True:
            raise procs.BenchError(f"POST /api/v1/projects: {status} {doc}")
        self.project_id = doc["data"]["project"]["uid"]
        self.api_key = doc["data"]["api_key"]["key"]

    def stop(self) -> None:
        procs.stop(self.proc, grace_s=15.0)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise procs.BenchError("hookcast serve died:\n" + procs.tail(self.log_path))

    # -- the project's API ---------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        status, doc = procs.http_json(
            method,
            self.project_base + path,
            body,
            {"Authorization": f"Bearer {key or self.api_key}"},
            timeout=30,
        )
        if status not in (200, 201, 202) or not doc or doc.get("status") is not True:
            raise procs.BenchError(f"{method} {path}: {status} {doc}")
        return doc["data"]

    def create_endpoint(
        self, url: str, name: str, owner_id: str = "", **extra: Any
    ) -> dict[str, Any]:
        body = {"url": url, "name": name, **({"owner_id": owner_id} if owner_id else {}), **extra}
        return self.api("POST", "/endpoints", body)  # type: ignore[no-any-return]

    def subscribe_all(self, endpoint_id: str, name: str) -> dict[str, Any]:
        body = {"name": name, "endpoint_id": endpoint_id, "filter_config": {"event_types": ["*"]}}
        return self.api("POST", "/subscriptions", body)  # type: ignore[no-any-return]

    def broadcast_key(self) -> str:
        """A new project key with the broadcast grant."""
        data = self.api("POST", "/api-keys", {"name": "bench-broadcast", "broadcast": True})
        return str(data["key"])

    # -- resource use -------------------------------------------------------------------------
    def _tree(self) -> list[psutil.Process]:
        assert self.ps is not None
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return [self.ps]

    def cpu_s(self) -> float:
        """CPU seconds of the server and its worker processes."""
        total = 0.0
        for proc in self._tree():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def peak_rss_mib(self) -> float:
        """The kernel's high-water mark of RSS (``VmHWM``), summed over the server and its
        worker processes (an upper bound of their simultaneous peak); call it while they run."""
        return sum(_peak_rss_mib(p) for p in self._tree())


def _peak_rss_mib(proc: psutil.Process) -> float:
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        return float(proc.memory_info().rss) / (1024 * 1024)
    except psutil.Error:
        return 0.0
