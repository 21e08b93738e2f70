"""Wake-ups are hints; polling is the truth. In one process an :class:`asyncio.Event`."""

from __future__ import annotations

import asyncio
import contextlib


class Waker:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, max_wait_s: float) -> bool:
        """Wait for a notification or *max_wait_s* seconds; True when notified."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                await self._event.wait()
        notified = self._event.is_set()
        self._event.clear()
        return notified
