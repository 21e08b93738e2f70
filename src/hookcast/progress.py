"""A progress bar for long CLI operations, with no dependency.

On a terminal it redraws one line in place; elsewhere (a pipe, a CI log) it prints a plain
line at most every few seconds and a final one, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 28


def render(label: str, done: int, total: int | None, rate: float | None, note: str = "") -> str:
    """One progress line: ``label [#####-----]  1,234/5,000  24%  120/s  note``."""
    if total:
        share = min(max(done / total, 0.0), 1.0)
        filled = round(share * _WIDTH)
        bar = "[" + "#" * filled + "-" * (_WIDTH - filled) + "]"
        counts = f"{done:,}/{total:,} {share:4.0%}"
    else:
        bar, counts = "[" + "?" * _WIDTH + "]", f"{done:,}/?"
    parts = [label, bar, counts]
    if rate is not None:
        parts.append(f"{rate:,.0f}/s")
    if note:
        parts.append(note)
    return "  ".join(parts)


class Progress:
    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        plain_every_s: float = 5.0,
        enabled: bool = True,
    ) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._every = plain_every_s
        self._enabled = enabled
        self._started = time.monotonic()
        self._last_plain = 0.0
        self._last_line = ""
        self._printed = ""

    def update(self, done: int, total: int | None, note: str = "") -> None:
        if not self._enabled:
            return
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0.5 and done else None
        line = render(self._label, done, total, rate, note)
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last_line)))
            self._stream.flush()
        elif elapsed - self._last_plain >= self._every or not self._last_line:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._last_plain = elapsed
            self._printed = line
        self._last_line = line

    def finish(self, message: str = "") -> None:
        if not self._enabled:
            return
        if self._tty:
            self._stream.write("\n")
        elif self._last_line and self._last_line != self._printed:
            self._stream.write(self._last_line + "\n")
        if message:
            self._stream.write(message + "\n")
        self._stream.flush()
