"""A real ``hookcast serve`` process on a fresh SQLite file, and the API calls to set it up."""

from __future__ import annotations

import os
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


@dataclass
class Gateway:
    """One server process plus the project it serves; use as a context manager."""

    env: dict[str, str] = field(default_factory=dict)
    #: delivery worker processes beside the API process (0 = all in one process)
    workers: int = field(default_factory=lambda: int(os.environ.get("HOOKCAST_BENCH_WORKERS", "1")))
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hookcast-bench-")))
    port: int = 0
    project_id: str = ""
    api_key: str = ""
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'hookcast.db'}"

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
        return {"HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8", **self.env}

    def start(self) -> Gateway:
        out = subprocess.run(
            [
                *HOOKCAST,
                "project",
                "create",
                "bench",
                "--json",
                "--database-url",
                self.database_url,
            ],
            env={**os.environ, **self.full_env()},
            capture_output=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            raise procs.BenchError(f"hookcast project create failed: {out.stderr.decode()[-2000:]}")
        created = orjson.loads(out.stdout)
        self.project_id, self.api_key = created["project_id"], created["api_key"]
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
                ],
                env=self.full_env(),
                stderr=log,
            )
        self.ps = psutil.Process(self.proc.pid)
        try:
            procs.wait_until(
                procs.http_up(self.base + "/health"),
                timeout_s=30,
                what="hookcast serve",
                alive=[self.proc],
            )
        except procs.BenchError as exc:
            raise procs.BenchError(f"{exc}\n{procs.tail(self.log_path)}") from exc
        return self

    def stop(self) -> None:
        procs.stop(self.proc, grace_s=10.0)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- the project's API ---------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = procs.http_json(
            method, self.project_base + path, body, {"Authorization": f"Bearer {self.api_key}"}
        )
        if status not in (200, 201, 202) or not doc or doc.get("status") is not True:
            raise procs.BenchError(f"{method} {path}: {status} {doc}")
        return doc["data"]

    def create_endpoint(self, url: str, name: str, owner_id: str = "") -> dict[str, Any]:
        body = {"url": url, "name": name, **({"owner_id": owner_id} if owner_id else {})}
        return self.api("POST", "/endpoints", body)  # type: ignore[no-any-return]

    def subscribe_all(self, endpoint_id: str, name: str) -> dict[str, Any]:
        body = {"name": name, "endpoint_id": endpoint_id, "filter_config": {"event_types": ["*"]}}
        return self.api("POST", "/subscriptions", body)  # type: ignore[no-any-return]

    # -- resource use -------------------------------------------------------------------------
    def cpu_s(self) -> float:
        """CPU seconds of the server and its worker processes."""
        assert self.ps is not None
        total = 0.0
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def peak_rss_mib(self) -> float:
        """The kernel's high-water mark of the server's RSS (VmHWM), else its current RSS."""
        assert self.ps is not None
        try:
            for line in Path(f"/proc/{self.ps.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return float(self.ps.memory_info().rss) / (1024 * 1024)
