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

LIBRARIES = ("hookcast", "aiohttp", "uvloop", "orjson", "pydantic", "SQLAlchemy", "psutil")


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


def describe() -> dict[str, Any]:
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
    }
