"""Optional sampling profile of a benchmarked process with py-spy (``--profile``).

py-spy is not a dependency: it is looked for on PATH or given with ``--py-spy PATH``. It
samples without pausing the target (``--nonblocking``) but still takes CPU from the same
two cores, so profiled runs are extra runs and never counted in the figures.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench import procs


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("py-spy")


class Profiler:
    def __init__(self, py_spy: str, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = procs.spawn(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--subprocesses",  # the delivery worker processes of `serve --workers N`
                "--output",
                str(out),
            ],
            stderr=(out.parent / "py-spy.log").open("wb"),
        )

    def finish(self, top: int = 15) -> str:
        # py-spy writes its output when interrupted
        procs.stop(self.proc, grace_s=20.0, sig=signal.SIGINT)
        self.proc = None
        if not self.out.exists():
            return "py-spy wrote no profile: " + procs.tail(self.out.parent / "py-spy.log", 5)
        return summarize(self.out.read_text(errors="replace"), top)


def summarize(raw: str, top: int = 15) -> str:
    """Top frames of py-spy's collapsed stacks: by self time and by inclusive time, and
    the share of each process (API process, delivery workers) when there are several."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_process: Counter[str] = Counter()
    own_by_process: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        # with --subprocesses each stack starts with its process and those of its parents
        process = ""
        while frames and frames[0].startswith("process "):
            process, frames = frames[0], frames[1:]
        frames = frames or ["(no Python frame)"]
        if process:
            name = _process(process)
            by_process[name] += count
            own_by_process.setdefault(name, Counter())[frames[-1]] += count
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    if not total:
        return "no samples"
    out = [f"{total} samples (busy threads only)", ""]
    if len(by_process) > 1:
        out += ["samples %  process"]
        out += [f"{100 * c / total:9.1f}  {p}" for p, c in by_process.most_common()]
        for name, _ in by_process.most_common():
            mine = own_by_process[name]
            out += ["", f"self % of all samples, in {name}"]
            out += [f"{100 * c / total:5.1f}  {f}" for f, c in mine.most_common(top // 2)]
        out += ["", "all processes:"]
    out += ["self %  frame"]
    out += [f"{100 * c / total:5.1f}  {f}" for f, c in own.most_common(top)]
    out += ["", "total %  frame (inclusive)"]
    out += [f"{100 * c / total:6.1f}  {f}" for f, c in incl.most_common(top + 10)]
    return "\n".join(out)


def _process(frame: str) -> str:
    """``process 123:"python -m hookcast worker"`` → ``hookcast worker``."""
    _, _, cmd = frame.partition(":")
    cmd = cmd.strip().strip('"')
    if "-m hookcast" in cmd:
        words = cmd.split("-m hookcast", 1)[1].split()
        return "hookcast " + (words[0] if words else "")
    return cmd[:60]


def _short(frame: str) -> str:
    """``fn (/long/path/site-packages/pkg/mod.py)`` → ``fn (pkg/mod.py)``."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rstrip(")")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
