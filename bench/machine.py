"""What the numbers were measured on: cores, memory, OS, Python and library versions."""

from __future__ import annotations

import os
import platform
import sqlite3
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

LIBRARIES = (
    "hookcast",
    "aiohttp",
    "uvloop",
    "orjson",
    "pydantic",
    "SQLAlchemy",
    "asyncpg",
    "psycopg",
    "psutil",
    # the baselines (the `bench` extra)
    "celery",
    "kombu",
    "redis",
    "requests",
    "dramatiq",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


def _fs_of(path: str) -> str:
    best = None
    for part in psutil.disk_partitions(all=True):
        if path.startswith(part.mountpoint) and (
            best is None or len(part.mountpoint) > len(best.mountpoint)
        ):
            best = part
    return f"{best.fstype} ({best.device})" if best else "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def busy_cores(sample_s: float = 1.0) -> float:
    """How many cores the whole machine keeps busy over ``sample_s`` seconds."""
    before = psutil.cpu_times()
    time.sleep(sample_s)
    after = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user
    return sum(getattr(after, f, 0.0) - getattr(before, f, 0.0) for f in fields) / sample_s


def wait_idle(timeout_s: float, threshold_cores: float = 0.15) -> float:
    """Wait (at most ``timeout_s``) until the machine is idle; returns the last busy figure."""
    deadline = time.monotonic() + timeout_s
    busy = busy_cores()
    while busy > threshold_cores and time.monotonic() < deadline:
        busy = busy_cores()
    return busy


def _postgres_version() -> str | None:
    try:
        import psycopg

        with psycopg.connect(pg_admin_url(), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return f"PostgreSQL {row[0].split()[0]}" if row else None
    except Exception:
        return None


def _redis_version() -> str | None:
    try:
        import redis

        info = redis.Redis.from_url(redis_url(0), socket_timeout=3).info("server")
        return f"Redis {info['redis_version']}"
    except Exception:
        return None


def pg_admin_url() -> str:
    """Where the PostgreSQL scenario creates its throwaway databases (``BENCH_PG_ADMIN_URL``)."""
    return os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def redis_url(db: int) -> str:
    """Redis for the baselines (``BENCH_REDIS_URL``, without a db number), database ``db``."""
    base = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    return f"{base}/{db}"


def describe() -> dict[str, Any]:
    services = {}
    for probe in (_postgres_version, _redis_version):
        found = probe()
        if found:
            name, version = found.split(" ", 1)
            services[name] = version
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "workdir_fs": _fs_of(os.path.realpath(tempfile.gettempdir())),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "services": services,
    }
