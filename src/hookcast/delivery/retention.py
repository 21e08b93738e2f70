"""Retention: rows older than the project's retention are removed in small batches."""

from __future__ import annotations

import asyncio
import logging
import time

from hookcast.domain.ports import Store

log = logging.getLogger("hookcast.retention")

BATCH = 2000
MAX_BATCHES_PER_PASS = 500


class RetentionRunner:
    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.pass_once()
            except Exception:
                log.exception("retention.failed")
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._stopping.wait()
            except TimeoutError:
                pass

    async def pass_once(self, now_us: int | None = None) -> int:
        """One sweep over every project; returns the rows removed."""
        now_us = now_us or time.time_ns() // 1000
        removed = 0
        for project_id, hours in await self._store.retention_policies():
            cutoff = now_us - hours * 3_600_000_000
            for _ in range(MAX_BATCHES_PER_PASS):
                n = await self._store.purge_before(project_id, cutoff, BATCH)
                removed += n
                if n == 0 or self._stopping.is_set():
                    break
                await asyncio.sleep(0.01)  # leave room for deliveries between batches
        if removed:
            log.info("retention.purged", extra={"rows": removed})
        return removed
