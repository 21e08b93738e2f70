"""Retention: rows older than the project's retention are removed.

On PostgreSQL a pass first maintains the daily partitions: it makes the coming days'
and drops every partition that ends before the longest retention of any project (when no
project keeps its data for ever), whole and at once. Then, project by project, the rows
older than that project's own retention go in small batches (on PostgreSQL, only those a
shorter retention than the longest leaves behind).
"""

from __future__ import annotations

import asyncio
import logging
import time

from hookcast.domain.ports import Operations

log = logging.getLogger("hookcast.retention")

BATCH = 2000
US_PER_HOUR = 3_600_000_000
MAX_BATCHES_PER_PASS = 500


class RetentionRunner:
    def __init__(self, store: Operations, interval_s: float) -> None:
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
        """One sweep over every project; returns the rows removed. A project whose purge
        fails is logged and skipped: it never stops the purge of the others."""
        now_us = now_us or time.time_ns() // 1000
        removed = 0
        policies = await self._store.retention_policies()
        try:
            await self._partitions(now_us, [hours for _, hours in policies])
        except Exception:
            log.exception("retention.partitions_failed")
        for project_id, hours in policies:
            if self._stopping.is_set():
                break
            if hours <= 0:
                continue
            try:
                removed += await self._purge(project_id, retention_cutoff_us(now_us, hours))
            except Exception:
                log.exception("retention.project_failed", extra={"project_id": project_id})
        if removed:
            log.info("retention.purged", extra={"rows": removed})
        return removed

    async def _partitions(self, now_us: int, hours: list[int]) -> None:
        keep_all = not hours or any(h <= 0 for h in hours)
        drop_before = None if keep_all else retention_cutoff_us(now_us, max(hours))
        created, dropped = await self._store.maintain_partitions(now_us, drop_before)
        if created or dropped:
            log.info("retention.partitions", extra={"created": created, "dropped": dropped})

    async def _purge(self, project_id: str, cutoff_us: int) -> int:
        removed = 0
        for _ in range(MAX_BATCHES_PER_PASS):
            n = await self._store.purge_before(project_id, cutoff_us, BATCH)
            removed += n
            if n == 0 or self._stopping.is_set():
                break
            await asyncio.sleep(0.01)  # leave room for deliveries between batches
        return removed


def retention_cutoff_us(now_us: int, hours: int) -> int:
    """Rows created before this instant are past a retention of *hours*; never below 0
    (the epoch), whatever *hours* a stored config holds, so it always fits a bigint."""
    return max(0, now_us - hours * US_PER_HOUR)
