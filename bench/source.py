"""Freeze the hookcast source a benchmark measures.

The working tree may change while a long benchmark runs (an editor saves, a branch is
checked out). The harness copies ``src/hookcast`` once, at the start, and every server it
starts imports that copy (``PYTHONPATH``), so all runs of all cases measure the same code;
the copy's digest and the git revision go into the results.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.procs import REPO

PACKAGE = REPO / "src" / "hookcast"


def digest(package: Path = PACKAGE) -> str:
    h = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def snapshot() -> tuple[Path, str]:
    """Copy the package into a fresh directory; returns (directory for PYTHONPATH, digest)."""
    root = Path(tempfile.mkdtemp(prefix="hookcast-bench-src-"))
    shutil.copytree(PACKAGE, root / "hookcast", ignore=shutil.ignore_patterns("__pycache__"))
    return root, digest(root / "hookcast")
