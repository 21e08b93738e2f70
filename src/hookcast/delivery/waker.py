"""Wake-ups are hints; polling is the truth.

In one process an :class:`asyncio.Event` is set after each commit. Across processes on the
same SQLite file, an idle worker also watches the database's change counter, so work
committed by another process is seen within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

ChangeProbe = Callable[[], Awaitable[int]]


class Waker:
    def __init__(self, change_probe: ChangeProbe | None = None, probe_s: float = 0.005) -> None:
        self._event = asyncio.Event()
        self._probe = change_probe
        self._probe_s = probe_s
        self._seen: int | None = None

    def notify(self) -> None:
        self._event.set()

    async def wait(self, max_wait_s: float) -> bool:
        """Wait for a notification, a change by another process, or *max_wait_s* seconds;
        True when woken early."""
        if self._probe is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_wait_s):
                    await self._event.wait()
        else:
            await self._wait_probing(max_wait_s)
        notified = self._event.is_set()
        self._event.clear()
        return notified

    async def _wait_probing(self, max_wait_s: float) -> None:
        assert self._probe is not None
        deadline = time.monotonic() + max_wait_s
        while not self._event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._probe_s, left)):
                    await self._event.wait()
            if self._event.is_set():
                return
            version = await self._probe()
            if self._seen is not None and version != self._seen:
                self._seen = version
                self._event.set()
                return
            self._seen = version
